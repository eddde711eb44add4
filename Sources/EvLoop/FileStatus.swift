#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// What `stat` reports about a file: the fields programs use, taken from statx(2).
///
/// Why statx and not stat(2): it is the one call io_uring can run (IORING_OP_STATX), and it
/// reports what stat(2) cannot: the birth time, and the alignment direct I/O needs on this
/// file (STATX_DIOALIGN, Linux 6.1), which `AlignedBuffer` uses. Fields the kernel or the
/// file system did not fill are nil (`birthTime`, the two alignments), never a made-up 0.
public struct FileStatus: Sendable, Hashable {
    /// What kind of file it is (the S_IFMT bits of the mode).
    public enum Kind: Sendable, Hashable {
        case regular, directory, symbolicLink, characterDevice, blockDevice, fifo, socket
        /// A type bit pattern this enum does not name.
        case unknown
    }

    /// Size in bytes (for a symbolic link, the length of its target).
    public var size: UInt64
    /// The mode: type and permission bits (S_IFMT and 0o7777).
    public var mode: UInt32
    /// The kind, from the mode.
    public var kind: Kind
    /// The permission bits (0o7777: rwx for owner, group, others, and setuid, setgid, sticky).
    public var permissions: UInt32 { mode & 0o7777 }
    /// The inode number, unique on its device.
    public var inode: UInt64
    /// The device the file lives on (major << 32 | minor, as the kernel reports them); two
    /// files with the same device and inode are the same file.
    public var device: UInt64
    /// Number of hard links.
    public var linkCount: UInt32
    public var userID: UInt32
    public var groupID: UInt32
    /// The preferred I/O block size.
    public var blockSize: UInt32
    /// 512-byte blocks allocated.
    public var blocks: UInt64
    /// Last access, data modification and status change (seconds and nanoseconds since
    /// the epoch, as a `Duration` from it).
    public var accessTime: Duration
    public var modificationTime: Duration
    public var changeTime: Duration
    /// Creation time, where the file system records it.
    public var birthTime: Duration?
    /// Direct I/O: the alignment a buffer's address must have (stx_dio_mem_align), and the
    /// alignment of file offsets and lengths (stx_dio_offset_align), where the kernel
    /// reports them (STATX_DIOALIGN, Linux 6.1, on a regular file of a file system that
    /// supports O_DIRECT); 0 from the kernel means direct I/O is not supported on this file.
    public var directIOMemoryAlignment: UInt32?
    public var directIOOffsetAlignment: UInt32?

    package init(_ s: cevsys_statx) {
        size = s.stx_size
        mode = UInt32(s.stx_mode)
        switch UInt32(s.stx_mode) & UInt32(S_IFMT) {
        case UInt32(S_IFREG): kind = .regular
        case UInt32(S_IFDIR): kind = .directory
        case UInt32(S_IFLNK): kind = .symbolicLink
        case UInt32(S_IFCHR): kind = .characterDevice
        case UInt32(S_IFBLK): kind = .blockDevice
        case UInt32(S_IFIFO): kind = .fifo
        case UInt32(S_IFSOCK): kind = .socket
        default: kind = .unknown
        }
        inode = s.stx_ino
        device = UInt64(s.stx_dev_major) << 32 | UInt64(s.stx_dev_minor)
        linkCount = s.stx_nlink
        userID = s.stx_uid
        groupID = s.stx_gid
        blockSize = s.stx_blksize
        blocks = s.stx_blocks
        func time(_ t: cevsys_statx_timestamp) -> Duration {
            .seconds(t.tv_sec) + .nanoseconds(Int64(t.tv_nsec))
        }
        accessTime = time(s.stx_atime)
        modificationTime = time(s.stx_mtime)
        changeTime = time(s.stx_ctime)
        birthTime = s.stx_mask & UInt32(CEVSYS_STATX_BTIME) != 0 ? time(s.stx_btime) : nil
        if s.stx_mask & UInt32(CEVSYS_STATX_DIOALIGN) != 0 {
            directIOMemoryAlignment = s.stx_dio_mem_align
            directIOOffsetAlignment = s.stx_dio_offset_align
        } else {
            directIOMemoryAlignment = nil
            directIOOffsetAlignment = nil
        }
    }
}
