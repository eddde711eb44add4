// ev-run: runs a command and streams its standard output and standard error through the
// loop.
//
// The child's stdout and stderr are pipes that `Subprocess.spawn` creates (`.pipe`); their
// parent ends are `ByteStream`s that the loop reads as data arrives, so the two streams are
// relayed as the child writes them, each line prefixed with `out:` or `err:` (or, with
// `--count`, only counted). When the child has exited and both streams have ended, ev-run
// prints the exit status and exits with the child's code (128 + the signal number when a
// signal ended it), so that it can stand in for the command in a script.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

let tool = CommandLineTool(
    name: "ev-run",
    summary: """
    Runs COMMAND (looked up in PATH) with its standard output and standard error connected
    to pipes that EvLoop reads, and prints each line the child writes as 'out: LINE' or
    'err: LINE' as it arrives. Standard input is inherited. When the command has exited it
    prints 'exit: STATUS' and a byte and line count per stream, and exits with the
    command's exit code (128 + N when signal N ended it).
    """,
    options: [
        .backend,
        OptionSpec("count", help: "count the bytes and lines of each stream instead of printing them"),
    ],
    examples: [
        "ev-run -- ls -l /",
        "ev-run --count --backend epoll -- sh -c 'seq 100000; echo done >&2'",
    ],
    command: "COMMAND [ARGUMENT...]"
)

let options = tool.parseSharedOrExit()
let command = options.parsed.command
if command.isEmpty { tool.usageError(.missingCommand("COMMAND")) }
let counting = options.parsed.flag("count")
let loop = ExampleProcess.openLoop(program: tool.name, backend: options.backend)

let child = tool.orFail("cannot run \(command[0])") { () throws(EvError) in
    try Subprocess.spawn(path: command[0], arguments: Array(command.dropFirst()), searchPath: true,
                         stdin: .inherit, stdout: .pipe, stderr: .pipe, loop: loop)
}
// Both are set: spawn was given `.pipe` for them.
let relays = [
    OutputRelay(label: "out", stream: child.standardOutput!, counting: counting),
    OutputRelay(label: "err", stream: child.standardError!, counting: counting),
]
var exitStatus: Result<Subprocess.ExitStatus, EvError>?
tool.orFail("cannot watch the command") { () throws(EvError) in
    /// "1 line", "2 lines".
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)" + (n == 1 ? "" : "s") }

for relay in relays { try relay.start(loop: loop) }
    try child.wait(loop: loop, completion: Completion()) { _, result in
        exitStatus = result
        return .disarm
    }
}
// Until the child has exited and both streams have ended (and been closed).
tool.orFail("the loop failed") { () throws(EvError) in try loop.run(.untilDone) }

/// "1 line", "2 lines".
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)" + (n == 1 ? "" : "s") }

for relay in relays {
    if let error = relay.error { Report.warn("\(tool.name): reading std\(relay.label): \(error)") }
    Report.say("std\(relay.label): \(counted(relay.bytes, "byte")), \(counted(relay.lines, "line"))")
}
switch exitStatus {
case .success(let status)?:
    Report.say("exit: \(status)")
    switch status {
    case .exited(let code): exit(code)
    case .signaled(let signal, _): exit(128 + signal)
    }
case .failure(let error)?:
    Report.fail(tool.name, "waiting for the command: \(error)")
case nil:
    Report.fail(tool.name, "the loop ended before the command did")
}
