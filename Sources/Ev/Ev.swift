@_exported import EvLoop
@_exported import EvBackendPoll
@_exported import EvBackendEpoll
@_exported import EvBackendUring
@_exported import EvAsync
