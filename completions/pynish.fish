# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pynish_global_optspecs
    string join \n w/wall-time= c/cpu-time= m/memory= memory-kind= p/processes= soft-wall-time= soft-cpu-time= soft-memory= soft-signal= open-files= file-size= stack= core-size= cpus= cpu-quota= g/grace= s/signal= preserve-status leave-leftovers json report= report-fd= timeline= output= output-limit= schema= label= q/quiet v/verbose backend= delegate adopt= adopt-fd= lifeline-fd= h/help V/version
end

function __fish_pynish_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pynish_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pynish_using_subcommand
    set -l cmd (__fish_pynish_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pynish -n "__fish_pynish_needs_command" -s w -l wall-time -d 'Real time, e.g. 7s, 1.5h (exit 124)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -s c -l cpu-time -d 'CPU time, user + system, of the whole tree (exit 123)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -s m -l memory -d 'Memory of the whole tree, e.g. 500MB, 2GiB (exit 122)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l memory-kind -d 'What -m counts' -r -f -a "resident\t'Resident memory summed over the whole tree'
virtual\t'Address space of each process separately (RLIMIT_AS), as pynisher did'"
complete -c pynish -n "__fish_pynish_needs_command" -s p -l processes -d 'Processes alive at once in the tree (exit 121)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l soft-wall-time -d 'Warn the tree when it has run this long: --soft-signal to every member, once' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l soft-cpu-time -d 'Warn the tree when it has used this much CPU time (user + system, ended members included)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l soft-memory -d 'Warn the tree when its memory exceeds SIZE (counted as --memory counts resident memory)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l soft-signal -d 'The warning a soft limit sends (default URG: ignored unless the command listens for it)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l open-files -d 'Descriptors each process may hold open (RLIMIT_NOFILE)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l file-size -d 'Bytes each process may write to one file (RLIMIT_FSIZE; exit 120)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l stack -d 'Main-thread stack of each process (RLIMIT_STACK)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l core-size -d 'Largest core dump of each process (RLIMIT_CORE); 0 forbids core dumps' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l cpus -d 'Run the whole tree on these CPUs only, e.g. 0,2-3 (as taskset -c)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l cpu-quota -d 'At most this many CPUs\' worth of time per second, for the whole tree together, e.g. 0.5, 1.5' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -s g -l grace -d 'Time from the first signal to SIGKILL' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -s s -l signal -d 'The first signal, a name or number' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l report -d 'Write the JSON report to FILE, atomically' -r -F
complete -c pynish -n "__fish_pynish_needs_command" -l report-fd -d 'Write the JSON report to open descriptor FD (3>run.json)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l timeline -d 'Write usage over time to FILE, as JSON lines (pynish plot draws it)' -r -F
complete -c pynish -n "__fish_pynish_needs_command" -l output -d 'Send the tree\'s stdout and stderr to FILE, not to the terminal' -r -F
complete -c pynish -n "__fish_pynish_needs_command" -l output-limit -d 'Keep at most SIZE bytes of output in --output\'s FILE: the first and the last half' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l schema -d 'The report\'s layout: 2 (the default), or 1 for a reader that refuses keys it does not know' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l label -d 'A name for this run, carried into the report' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l backend -d 'How the tree is contained and measured' -r -f -a "auto\t'proc, unless --memory or --processes needs a kernel group: then cgroup v2, else v1, else proc'
cgroup2\t'A cgroup v2 group of its own (needs write access to a delegated group)'
cgroup1\t'cgroup v1 groups in the memory, cpuacct, pids and freezer hierarchies'
proc\t'Sample /proc for the tree, with rlimits as the kernel\'s backstop'"
complete -c pynish -n "__fish_pynish_needs_command" -l adopt -d 'Supervise this existing child of pynish instead of starting COMMAND (needs --adopt-fd)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l adopt-fd -d 'The write end of the pipe the adopted process waits on (see --adopt)' -r -f
complete -c pynish -n "__fish_pynish_needs_command" -l lifeline-fd -d 'End the tree, as on a SIGTERM to pynish, once every write end of the pipe whose read end is FD is closed' -r
complete -c pynish -n "__fish_pynish_needs_command" -l preserve-status -d 'Exit with the command\'s own status even when a limit was hit'
complete -c pynish -n "__fish_pynish_needs_command" -l leave-leftovers -d 'When the command\'s first process ends, leave what it left behind running and end pynish there'
complete -c pynish -n "__fish_pynish_needs_command" -l json -d 'Print the JSON report on stderr once the whole tree is gone'
complete -c pynish -n "__fish_pynish_needs_command" -s q -l quiet -d 'Print nothing of pynish\'s own, not even a limit hit'
complete -c pynish -n "__fish_pynish_needs_command" -s v -l verbose -d 'Print one line on stderr per supervision event'
complete -c pynish -n "__fish_pynish_needs_command" -l delegate -d 'No writable cgroup v2 group? Re-run in a delegated systemd scope'
complete -c pynish -n "__fish_pynish_needs_command" -s h -l help -d 'Print help (pynish help adds units, exit status and details)'
complete -c pynish -n "__fish_pynish_needs_command" -s V -l version -d 'Print version'
complete -c pynish -n "__fish_pynish_needs_command" -a "plot" -d 'Draw a --timeline file as an SVG'
complete -c pynish -n "__fish_pynish_needs_command" -a "check" -d 'Tell which limits this machine can enforce, with which backend, and why not the others'
complete -c pynish -n "__fish_pynish_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pynish -n "__fish_pynish_using_subcommand plot" -s o -l output -d 'Where to write the SVG [default: FILE with the extension .svg]' -r -F
complete -c pynish -n "__fish_pynish_using_subcommand plot" -s h -l help -d 'Print help (pynish help adds units, exit status and details)'
complete -c pynish -n "__fish_pynish_using_subcommand check" -l json -d 'Print the findings as one JSON object'
complete -c pynish -n "__fish_pynish_using_subcommand check" -s h -l help -d 'Print help (pynish help adds units, exit status and details)'
complete -c pynish -n "__fish_pynish_using_subcommand help; and not __fish_seen_subcommand_from plot check help" -f -a "plot" -d 'Draw a --timeline file as an SVG'
complete -c pynish -n "__fish_pynish_using_subcommand help; and not __fish_seen_subcommand_from plot check help" -f -a "check" -d 'Tell which limits this machine can enforce, with which backend, and why not the others'
complete -c pynish -n "__fish_pynish_using_subcommand help; and not __fish_seen_subcommand_from plot check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
