#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Memory aligned for direct I/O, owned by this object and freed when it goes.
///
/// Why: with O_DIRECT the kernel moves data between the device and the buffer itself, so
/// the buffer's address (and the file offset and length) must be multiples of what the
/// device and file system require; an unaligned one fails with `.invalidArgument`
/// (EINVAL). The requirement is the file's: statx reports it as STATX_DIOALIGN (Linux 6.1,
/// `FileStatus.directIOMemoryAlignment` and `directIOOffsetAlignment`); where it is not
/// reported, 4096 bytes (the page size, and the largest logical block size of common
/// devices) is safe. `alignment(for:)` picks it.
///
/// The buffer is zeroed when made. Like any buffer handed to the loop, it must outlive
/// the operations that use it (keep the object until their callbacks have run).
///
/// ```swift
/// let status = ...                                   // file.stat(loop:completion:callback:)
/// let buffer = try AlignedBuffer(byteCount: 4096, alignment: AlignedBuffer.alignment(for: status))
/// try file.pread(loop: loop, completion: c, buffer: buffer.bytes, offset: 0) { _, result in ... }
/// ```
public final class AlignedBuffer {
    /// The memory (`byteCount` bytes at an address that is a multiple of `alignment`).
    public let bytes: UnsafeMutableRawBufferPointer
    /// The address's alignment.
    public let alignment: Int

    /// The alignment safe for direct I/O when the kernel does not report one.
    public static let defaultAlignment = 4096

    /// The alignment to use for buffers, offsets and lengths of direct I/O on a file
    /// with this status: the larger of the memory and offset alignments statx reported,
    /// or `defaultAlignment` when it reported neither (or 0: the file system does not
    /// support direct I/O on this file, and the open with `.direct` will have failed).
    public static func alignment(for status: FileStatus) -> Int {
        let memory = Int(status.directIOMemoryAlignment ?? 0)
        let offset = Int(status.directIOOffsetAlignment ?? 0)
        let reported = max(memory, offset)
        return reported > 0 ? reported : defaultAlignment
    }

    /// Allocates `byteCount` bytes aligned to `alignment` (a power of two, at least the
    /// size of a pointer). Throws `.invalidArgument` for another alignment or a negative
    /// count, `.systemResources` when memory runs out.
    public init(byteCount: Int, alignment: Int = AlignedBuffer.defaultAlignment) throws(EvError) {
        guard byteCount >= 0, alignment >= MemoryLayout<UnsafeRawPointer>.size,
              alignment & (alignment - 1) == 0 else { throw .invalidArgument }
        var p: UnsafeMutableRawPointer?
        let r = posix_memalign(&p, alignment, max(byteCount, 1))
        guard r == 0, let p else { throw EvError(errno: r == 0 ? ENOMEM : r) }
        memset(p, 0, max(byteCount, 1))
        bytes = UnsafeMutableRawBufferPointer(start: p, count: byteCount)
        self.alignment = alignment
    }

    deinit { free(bytes.baseAddress) }
}
