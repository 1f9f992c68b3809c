
use builtin;
use str;

set edit:completion:arg-completer[pynish] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'pynish'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'pynish'= {
            cand -w 'Real time, e.g. 7s, 1.5h (exit 124)'
            cand --wall-time 'Real time, e.g. 7s, 1.5h (exit 124)'
            cand -c 'CPU time, user + system, of the whole tree (exit 123)'
            cand --cpu-time 'CPU time, user + system, of the whole tree (exit 123)'
            cand -m 'Memory of the whole tree, e.g. 500MB, 2GiB (exit 122)'
            cand --memory 'Memory of the whole tree, e.g. 500MB, 2GiB (exit 122)'
            cand --memory-kind 'What -m counts'
            cand -p 'Processes alive at once in the tree (exit 121)'
            cand --processes 'Processes alive at once in the tree (exit 121)'
            cand --soft-wall-time 'Warn the tree when it has run this long: --soft-signal to every member, once'
            cand --soft-cpu-time 'Warn the tree when it has used this much CPU time (user + system, ended members included)'
            cand --soft-memory 'Warn the tree when its memory exceeds SIZE (counted as --memory counts resident memory)'
            cand --soft-signal 'The warning a soft limit sends (default URG: ignored unless the command listens for it)'
            cand --open-files 'Descriptors each process may hold open (RLIMIT_NOFILE)'
            cand --file-size 'Bytes each process may write to one file (RLIMIT_FSIZE; exit 120)'
            cand --stack 'Main-thread stack of each process (RLIMIT_STACK)'
            cand --core-size 'Largest core dump of each process (RLIMIT_CORE); 0 forbids core dumps'
            cand --cpus 'Run the whole tree on these CPUs only, e.g. 0,2-3 (as taskset -c)'
            cand --cpu-quota 'At most this many CPUs'' worth of time per second, for the whole tree together, e.g. 0.5, 1.5'
            cand -g 'Time from the first signal to SIGKILL'
            cand --grace 'Time from the first signal to SIGKILL'
            cand -s 'The first signal, a name or number'
            cand --signal 'The first signal, a name or number'
            cand --report 'Write the JSON report to FILE, atomically'
            cand --report-fd 'Write the JSON report to open descriptor FD (3>run.json)'
            cand --timeline 'Write usage over time to FILE, as JSON lines (pynish plot draws it)'
            cand --output 'Send the tree''s stdout and stderr to FILE, not to the terminal'
            cand --output-limit 'Keep at most SIZE bytes of output in --output''s FILE: the first and the last half'
            cand --schema 'The report''s layout: 2 (the default), or 1 for a reader that refuses keys it does not know'
            cand --label 'A name for this run, carried into the report'
            cand --backend 'How the tree is contained and measured'
            cand --adopt 'Supervise this existing child of pynish instead of starting COMMAND (needs --adopt-fd)'
            cand --adopt-fd 'The write end of the pipe the adopted process waits on (see --adopt)'
            cand --lifeline-fd 'End the tree, as on a SIGTERM to pynish, once every write end of the pipe whose read end is FD is closed'
            cand --preserve-status 'Exit with the command''s own status even when a limit was hit'
            cand --leave-leftovers 'When the command''s first process ends, leave what it left behind running and end pynish there'
            cand --json 'Print the JSON report on stderr once the whole tree is gone'
            cand -q 'Print nothing of pynish''s own, not even a limit hit'
            cand --quiet 'Print nothing of pynish''s own, not even a limit hit'
            cand -v 'Print one line on stderr per supervision event'
            cand --verbose 'Print one line on stderr per supervision event'
            cand --delegate 'No writable cgroup v2 group? Re-run in a delegated systemd scope'
            cand -h 'Print help (pynish help adds units, exit status and details)'
            cand --help 'Print help (pynish help adds units, exit status and details)'
            cand -V 'Print version'
            cand --version 'Print version'
            cand plot 'Draw a --timeline file as an SVG'
            cand check 'Tell which limits this machine can enforce, with which backend, and why not the others'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'pynish;plot'= {
            cand -o 'Where to write the SVG [default: FILE with the extension .svg]'
            cand --output 'Where to write the SVG [default: FILE with the extension .svg]'
            cand -h 'Print help (pynish help adds units, exit status and details)'
            cand --help 'Print help (pynish help adds units, exit status and details)'
        }
        &'pynish;check'= {
            cand --json 'Print the findings as one JSON object'
            cand -h 'Print help (pynish help adds units, exit status and details)'
            cand --help 'Print help (pynish help adds units, exit status and details)'
        }
        &'pynish;help'= {
            cand plot 'Draw a --timeline file as an SVG'
            cand check 'Tell which limits this machine can enforce, with which backend, and why not the others'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'pynish;help;plot'= {
        }
        &'pynish;help;check'= {
        }
        &'pynish;help;help'= {
        }
    ]
    $completions[$command]
}
