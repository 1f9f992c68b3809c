
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'pynish' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'pynish'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'pynish' {
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Real time, e.g. 7s, 1.5h (exit 124)')
            [CompletionResult]::new('--wall-time', '--wall-time', [CompletionResultType]::ParameterName, 'Real time, e.g. 7s, 1.5h (exit 124)')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'CPU time, user + system, of the whole tree (exit 123)')
            [CompletionResult]::new('--cpu-time', '--cpu-time', [CompletionResultType]::ParameterName, 'CPU time, user + system, of the whole tree (exit 123)')
            [CompletionResult]::new('-m', '-m', [CompletionResultType]::ParameterName, 'Memory of the whole tree, e.g. 500MB, 2GiB (exit 122)')
            [CompletionResult]::new('--memory', '--memory', [CompletionResultType]::ParameterName, 'Memory of the whole tree, e.g. 500MB, 2GiB (exit 122)')
            [CompletionResult]::new('--memory-kind', '--memory-kind', [CompletionResultType]::ParameterName, 'What -m counts')
            [CompletionResult]::new('-p', '-p', [CompletionResultType]::ParameterName, 'Processes alive at once in the tree (exit 121)')
            [CompletionResult]::new('--processes', '--processes', [CompletionResultType]::ParameterName, 'Processes alive at once in the tree (exit 121)')
            [CompletionResult]::new('--soft-wall-time', '--soft-wall-time', [CompletionResultType]::ParameterName, 'Warn the tree when it has run this long: --soft-signal to every member, once')
            [CompletionResult]::new('--soft-cpu-time', '--soft-cpu-time', [CompletionResultType]::ParameterName, 'Warn the tree when it has used this much CPU time (user + system, ended members included)')
            [CompletionResult]::new('--soft-memory', '--soft-memory', [CompletionResultType]::ParameterName, 'Warn the tree when its memory exceeds SIZE (counted as --memory counts resident memory)')
            [CompletionResult]::new('--soft-signal', '--soft-signal', [CompletionResultType]::ParameterName, 'The warning a soft limit sends (default URG: ignored unless the command listens for it)')
            [CompletionResult]::new('--open-files', '--open-files', [CompletionResultType]::ParameterName, 'Descriptors each process may hold open (RLIMIT_NOFILE)')
            [CompletionResult]::new('--file-size', '--file-size', [CompletionResultType]::ParameterName, 'Bytes each process may write to one file (RLIMIT_FSIZE; exit 120)')
            [CompletionResult]::new('--stack', '--stack', [CompletionResultType]::ParameterName, 'Main-thread stack of each process (RLIMIT_STACK)')
            [CompletionResult]::new('--core-size', '--core-size', [CompletionResultType]::ParameterName, 'Largest core dump of each process (RLIMIT_CORE); 0 forbids core dumps')
            [CompletionResult]::new('--cpus', '--cpus', [CompletionResultType]::ParameterName, 'Run the whole tree on these CPUs only, e.g. 0,2-3 (as taskset -c)')
            [CompletionResult]::new('--cpu-quota', '--cpu-quota', [CompletionResultType]::ParameterName, 'At most this many CPUs'' worth of time per second, for the whole tree together, e.g. 0.5, 1.5')
            [CompletionResult]::new('-g', '-g', [CompletionResultType]::ParameterName, 'Time from the first signal to SIGKILL')
            [CompletionResult]::new('--grace', '--grace', [CompletionResultType]::ParameterName, 'Time from the first signal to SIGKILL')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'The first signal, a name or number')
            [CompletionResult]::new('--signal', '--signal', [CompletionResultType]::ParameterName, 'The first signal, a name or number')
            [CompletionResult]::new('--report', '--report', [CompletionResultType]::ParameterName, 'Write the JSON report to FILE, atomically')
            [CompletionResult]::new('--report-fd', '--report-fd', [CompletionResultType]::ParameterName, 'Write the JSON report to open descriptor FD (3>run.json)')
            [CompletionResult]::new('--timeline', '--timeline', [CompletionResultType]::ParameterName, 'Write usage over time to FILE, as JSON lines (pynish plot draws it)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Send the tree''s stdout and stderr to FILE, not to the terminal')
            [CompletionResult]::new('--output-limit', '--output-limit', [CompletionResultType]::ParameterName, 'Keep at most SIZE bytes of output in --output''s FILE: the first and the last half')
            [CompletionResult]::new('--schema', '--schema', [CompletionResultType]::ParameterName, 'The report''s layout: 2 (the default), or 1 for a reader that refuses keys it does not know')
            [CompletionResult]::new('--label', '--label', [CompletionResultType]::ParameterName, 'A name for this run, carried into the report')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'How the tree is contained and measured')
            [CompletionResult]::new('--adopt', '--adopt', [CompletionResultType]::ParameterName, 'Supervise this existing child of pynish instead of starting COMMAND (needs --adopt-fd)')
            [CompletionResult]::new('--adopt-fd', '--adopt-fd', [CompletionResultType]::ParameterName, 'The write end of the pipe the adopted process waits on (see --adopt)')
            [CompletionResult]::new('--lifeline-fd', '--lifeline-fd', [CompletionResultType]::ParameterName, 'End the tree, as on a SIGTERM to pynish, once every write end of the pipe whose read end is FD is closed')
            [CompletionResult]::new('--preserve-status', '--preserve-status', [CompletionResultType]::ParameterName, 'Exit with the command''s own status even when a limit was hit')
            [CompletionResult]::new('--leave-leftovers', '--leave-leftovers', [CompletionResultType]::ParameterName, 'When the command''s first process ends, leave what it left behind running and end pynish there')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the JSON report on stderr once the whole tree is gone')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing of pynish''s own, not even a limit hit')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing of pynish''s own, not even a limit hit')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print one line on stderr per supervision event')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print one line on stderr per supervision event')
            [CompletionResult]::new('--delegate', '--delegate', [CompletionResultType]::ParameterName, 'No writable cgroup v2 group? Re-run in a delegated systemd scope')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (pynish help adds units, exit status and details)')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (pynish help adds units, exit status and details)')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('plot', 'plot', [CompletionResultType]::ParameterValue, 'Draw a --timeline file as an SVG')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Tell which limits this machine can enforce, with which backend, and why not the others')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pynish;plot' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Where to write the SVG [default: FILE with the extension .svg]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Where to write the SVG [default: FILE with the extension .svg]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (pynish help adds units, exit status and details)')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (pynish help adds units, exit status and details)')
            break
        }
        'pynish;check' {
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print the findings as one JSON object')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (pynish help adds units, exit status and details)')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (pynish help adds units, exit status and details)')
            break
        }
        'pynish;help' {
            [CompletionResult]::new('plot', 'plot', [CompletionResultType]::ParameterValue, 'Draw a --timeline file as an SVG')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Tell which limits this machine can enforce, with which backend, and why not the others')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'pynish;help;plot' {
            break
        }
        'pynish;help;check' {
            break
        }
        'pynish;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
