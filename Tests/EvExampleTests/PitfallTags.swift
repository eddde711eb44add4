// Swift Testing tags for the pitfall IDs of docs/PITFALLS.md: a test that covers pitfall Xn
// carries `.pitfallXn`, so the tests of one pitfall are found by tag wherever the feature
// they exercise puts them (docs/PITFALLS.md, "Finding the tests of a pitfall").
// Only the IDs this target's tests cover are declared here; the full list is in
// Tests/EvConformanceTests/PitfallTags.swift. A tag is identified by its name, so the
// same tag declared in two test targets is one tag.
import Testing

extension Tag {
    /// C2. Container seccomp profiles block io_uring (EPERM)
    @Tag static var pitfallC2: Self
    /// C3. `kernel.io_uring_disabled`
    @Tag static var pitfallC3: Self
    /// C4. ENOSYS
    @Tag static var pitfallC4: Self
    /// C8. Known-bad kernels; an environment override
    @Tag static var pitfallC8: Self
    /// C9. Silent fallback
    @Tag static var pitfallC9: Self
    /// K2. -errno vs errno
    @Tag static var pitfallK2: Self
}
