import EvLoop
// PLACEHOLDER (being written): the readiness engine shared by epoll and poll.
open class ReadinessLoop: LoopCore {}
