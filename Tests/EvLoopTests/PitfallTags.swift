// Swift Testing tags for the pitfall IDs of docs/PITFALLS.md: a test that covers pitfall Xn
// carries `.pitfallXn`, so the tests of one pitfall are found by tag wherever the feature
// they exercise puts them (docs/PITFALLS.md, "Finding the tests of a pitfall").
// Only the IDs this target's tests cover are declared here; the full list is in
// Tests/EvConformanceTests/PitfallTags.swift. A tag is identified by its name, so the
// same tag declared in two test targets is one tag.
import Testing

extension Tag {
    /// D9. Result mapping edge cases
    @Tag static var pitfallD9: Self
    /// F5. Huge durations
    @Tag static var pitfallF5: Self
    /// I1. connect/shutdown error mapping
    @Tag static var pitfallI1: Self
    /// K2. -errno vs errno
    @Tag static var pitfallK2: Self
}
