// ev-backend-probe: shows which backend runtime selection picks on this machine, and why
// each backend before it was skipped.
//
// Runtime selection (`makeBestLoop`) tries io_uring, then epoll, then poll. Containers and
// hardened kernels often block io_uring (Docker's default seccomp profile answers EPERM;
// kernels without CONFIG_IO_URING answer ENOSYS), and a program that falls back silently
// hides a real performance loss, so the selection keeps the reason. This tool prints it,
// and `--deny-io-uring ERRNO` reproduces those environments on any machine by installing
// a seccomp filter before detection, which is how the tests check the fallback.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import CEvExampleSupport

let tool = CommandLineTool(
    name: "ev-backend-probe",
    summary: """
    Prints the event-loop backend that runtime selection picks on this machine (io_uring,
    then epoll, then poll) and the reason each earlier backend was skipped, then whether each
    backend initializes on its own. EV_BACKEND=io_uring|epoll|poll forces one, as it does
    for every EvLoop program.
    """,
    options: [
        OptionSpec("deny-io-uring", value: "ERRNO",
                   help: "before detecting, make io_uring_setup fail with ERRNO (EPERM or ENOSYS) through a seccomp filter, as Docker's default profile or a kernel without io_uring would"),
    ],
    examples: [
        "ev-backend-probe",
        "ev-backend-probe --deny-io-uring EPERM",
        "EV_BACKEND=poll ev-backend-probe",
    ]
)

let options = tool.parseOrExit()

if let name = options.string("deny-io-uring") {
    guard let code = ExampleProcess.errnoValue(named: name) else {
        tool.usageError(.invalidValue(option: "deny-io-uring", value: name, expected: "an errno name such as EPERM or ENOSYS"))
    }
    if evex_deny_io_uring_setup(code) != 0 {
        let e = evex_errno()
        Report.fail(tool.name, "cannot install the seccomp filter: \(ExampleProcess.errnoName(e)) (\(String(cString: strerror(e))))")
    }
    Report.say("seccomp: io_uring_setup now fails with \(ExampleProcess.errnoName(code)) in this process")
}

/// One line per skipped backend, naming the errno when the backend reported one.
func describe(_ u: BackendUnavailable) -> String {
    var s = "\(u.backend)"
    if let e = u.errno { s += " [\(ExampleProcess.errnoName(e))]" }
    return s + ": \(u.reason)"
}

var status: Int32 = 0
do {
    let (loop, selection) = try makeBestLoop()
    Report.say("selected: \(loop.backend)")
    Report.say("selection: \(selection)")
    for u in selection.skipped { Report.say("skipped \(describe(u))") }
} catch {
    Report.say("selected: none")
    Report.say("selection failed: \(error)")
    status = 1
}

// Each backend on its own (ignores EV_BACKEND): what a program asking for it would get.
for backend in Backend.allCases {
    do {
        let loop = try makeLoop(backend)
        Report.say("available: \(loop.backend)")
    } catch {
        Report.say("unavailable: \(describe(error))")
    }
}
exit(status)
