import Foundation

/// A flat float32 buffer shared by tensors and their views.
///
/// Owned buffers are allocated and freed here. Borrowed buffers point into memory someone else
/// owns (a memory-mapped safetensors file, an arena); `owner` keeps that memory alive as long as
/// any tensor uses it, and `isReadOnly` guards frozen weights mapped without write permission.
// @unchecked Sendable: raw memory under the tensor contract (see Tensor); read-only storages are
// mapped without write permission, so a stray write traps instead of racing.
public final class TensorStorage: @unchecked Sendable {
    /// Reached only through the scoped accessors in TensorAccess.swift, which keep this storage
    /// alive while the pointer is in use: a pointer read from a storage the optimiser has already
    /// released (the last use of a temporary tensor) would point into freed memory.
    @usableFromInline let base: UnsafeMutablePointer<Float>
    public let count: Int
    public let isReadOnly: Bool
    private let owner: AnyObject?
    private let ownsMemory: Bool

    /// A new zero-filled buffer of `count` floats.
    public init(count: Int) {
        precondition(count >= 0, "negative storage size")
        let capacity = max(count, 1)
        base = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        base.initialize(repeating: 0, count: capacity)
        self.count = count
        isReadOnly = false
        owner = nil
        ownsMemory = true
    }

    /// A new buffer whose contents the caller writes before anyone reads (no zero fill).
    public init(uninitializedCount count: Int) {
        let capacity = max(count, 1)
        base = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        self.count = count
        isReadOnly = false
        owner = nil
        ownsMemory = true
    }

    /// Borrows memory owned by `owner`, which is retained for the lifetime of this storage.
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject?, readOnly: Bool) {
        base = pointer
        self.count = count
        self.owner = owner
        isReadOnly = readOnly
        ownsMemory = false
    }

    deinit {
        if ownsMemory { base.deallocate() }
    }
}
