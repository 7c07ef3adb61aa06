// Scoped access to a tensor's raw memory.
//
// A tensor's elements live in a `TensorStorage` that ARC frees when its last reference goes. A
// pointer taken from a tensor does not count as a reference: in optimised builds a temporary's
// storage can be released right after its pointer is read, before the loop that uses it, so the
// loop reads freed memory (and only in release builds). Every raw access therefore happens inside
// a closure that holds the storage until it returns (`withExtendedLifetime`). The closures are
// `@inlinable` and always inlined, so a kernel compiles to the same loop as on a bare pointer.
// The pointer must not be kept after the closure returns.

extension Tensor {
    /// The elements, readable, for the duration of `body`.
    @inlinable @inline(__always)
    public func withUnsafeBufferPointer<R, E: Error>(_ body: (UnsafeBufferPointer<Float>) throws(E) -> R) throws(E) -> R
    {
        try withExtendedLifetime(storage) { () throws(E) -> R in
            try body(UnsafeBufferPointer(start: storage.base + offset, count: count))
        }
    }

    /// The elements, writable, for the duration of `body`; only for tensors the caller created or
    /// was handed as an output, never an input. Memory-mapped weights are refused: they are
    /// shared with every process that maps the file, and the mapping has no write permission.
    @inlinable @inline(__always)
    public func withUnsafeMutableBufferPointer<R, E: Error>(_ body: (UnsafeMutableBufferPointer<Float>) throws(E) -> R)
        throws(E) -> R
    {
        precondition(!storage.isReadOnly, "attempt to write into read-only (memory-mapped) tensor storage")
        return try withExtendedLifetime(storage) { () throws(E) -> R in
            try body(UnsafeMutableBufferPointer(start: storage.base + offset, count: count))
        }
    }

    /// The first element's address, readable, for the duration of `body` (for kernels that index
    /// or offset it, and for BLAS). Valid also for an empty tensor.
    @inlinable @inline(__always)
    public func withUnsafePointer<R, E: Error>(_ body: (UnsafePointer<Float>) throws(E) -> R) throws(E) -> R {
        try withExtendedLifetime(storage) { () throws(E) -> R in
            try body(UnsafePointer(storage.base + offset))
        }
    }

    /// The first element's address, writable, for the duration of `body`; the same rules as
    /// `withUnsafeMutableBufferPointer`.
    @inlinable @inline(__always)
    public func withUnsafeMutablePointer<R, E: Error>(_ body: (UnsafeMutablePointer<Float>) throws(E) -> R) throws(E)
        -> R
    {
        precondition(!storage.isReadOnly, "attempt to write into read-only (memory-mapped) tensor storage")
        return try withExtendedLifetime(storage) { () throws(E) -> R in
            try body(storage.base + offset)
        }
    }
}

extension Optional where Wrapped == Tensor {
    /// The first element's address when there is a tensor (an optional bias, mask or weight), nil
    /// otherwise, for the duration of `body`.
    @inlinable @inline(__always)
    public func withUnsafePointerIfPresent<R, E: Error>(_ body: (UnsafePointer<Float>?) throws(E) -> R) throws(E) -> R {
        switch self {
        case let .some(t): return try t.withUnsafePointer { (p) throws(E) -> R in try body(p) }
        case .none: return try body(nil)
        }
    }

    /// The writable form of `withUnsafePointerIfPresent` (an optional output).
    @inlinable @inline(__always)
    public func withUnsafeMutablePointerIfPresent<R, E: Error>(_ body: (UnsafeMutablePointer<Float>?) throws(E) -> R)
        throws(E) -> R
    {
        switch self {
        case let .some(t): return try t.withUnsafeMutablePointer { (p) throws(E) -> R in try body(p) }
        case .none: return try body(nil)
        }
    }
}

// Kernels that work on several tensors at once: `withTensorPointers(writing: out, reading: a, b)
// { o, pa, pb in ... }` hands over the outputs' and inputs' first-element addresses (outputs first,
// each checked writable) and keeps every storage alive until the closure returns. One overload
// per count (up to 3 outputs and 4 inputs; generated), so the closure's arguments are concrete
// pointers with no array or generic pack between them and the loop.

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    reading r0: Tensor, _ r1: Tensor,
    _ body: (UnsafePointer<Float>, UnsafePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try r0.withUnsafePointer { (q0) throws(E) -> R in
        try r1.withUnsafePointer { (q1) throws(E) -> R in
            try body(q0, q1)
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    reading r0: Tensor, _ r1: Tensor, _ r2: Tensor,
    _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try r0.withUnsafePointer { (q0) throws(E) -> R in
        try r1.withUnsafePointer { (q1) throws(E) -> R in
            try r2.withUnsafePointer { (q2) throws(E) -> R in
                try body(q0, q1, q2)
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    reading r0: Tensor, _ r1: Tensor, _ r2: Tensor, _ r3: Tensor,
    _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try r0.withUnsafePointer { (q0) throws(E) -> R in
        try r1.withUnsafePointer { (q1) throws(E) -> R in
            try r2.withUnsafePointer { (q2) throws(E) -> R in
                try r3.withUnsafePointer { (q3) throws(E) -> R in
                    try body(q0, q1, q2, q3)
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, reading r0: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try r0.withUnsafePointer { (q0) throws(E) -> R in
            try body(p0, q0)
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, reading r0: Tensor, _ r1: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try r0.withUnsafePointer { (q0) throws(E) -> R in
            try r1.withUnsafePointer { (q1) throws(E) -> R in
                try body(p0, q0, q1)
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, reading r0: Tensor, _ r1: Tensor, _ r2: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) throws(E) ->
        R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try r0.withUnsafePointer { (q0) throws(E) -> R in
            try r1.withUnsafePointer { (q1) throws(E) -> R in
                try r2.withUnsafePointer { (q2) throws(E) -> R in
                    try body(p0, q0, q1, q2)
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, reading r0: Tensor, _ r1: Tensor, _ r2: Tensor, _ r3: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
        UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try r0.withUnsafePointer { (q0) throws(E) -> R in
            try r1.withUnsafePointer { (q1) throws(E) -> R in
                try r2.withUnsafePointer { (q2) throws(E) -> R in
                    try r3.withUnsafePointer { (q3) throws(E) -> R in
                        try body(p0, q0, q1, q2, q3)
                    }
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try body(p0, p1)
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, reading r0: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try r0.withUnsafePointer { (q0) throws(E) -> R in
                try body(p0, p1, q0)
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, reading r0: Tensor, _ r1: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>)
        throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try r0.withUnsafePointer { (q0) throws(E) -> R in
                try r1.withUnsafePointer { (q1) throws(E) -> R in
                    try body(p0, p1, q0, q1)
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, reading r0: Tensor, _ r1: Tensor, _ r2: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
        UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try r0.withUnsafePointer { (q0) throws(E) -> R in
                try r1.withUnsafePointer { (q1) throws(E) -> R in
                    try r2.withUnsafePointer { (q2) throws(E) -> R in
                        try body(p0, p1, q0, q1, q2)
                    }
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, reading r0: Tensor, _ r1: Tensor, _ r2: Tensor, _ r3: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
        UnsafePointer<Float>, UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try r0.withUnsafePointer { (q0) throws(E) -> R in
                try r1.withUnsafePointer { (q1) throws(E) -> R in
                    try r2.withUnsafePointer { (q2) throws(E) -> R in
                        try r3.withUnsafePointer { (q3) throws(E) -> R in
                            try body(p0, p1, q0, q1, q2, q3)
                        }
                    }
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, _ w2: Tensor,
    _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try w2.withUnsafeMutablePointer { (p2) throws(E) -> R in
                try body(p0, p1, p2)
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, _ w2: Tensor, reading r0: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try w2.withUnsafeMutablePointer { (p2) throws(E) -> R in
                try r0.withUnsafePointer { (q0) throws(E) -> R in
                    try body(p0, p1, p2, q0)
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, _ w2: Tensor, reading r0: Tensor, _ r1: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>,
        UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try w2.withUnsafeMutablePointer { (p2) throws(E) -> R in
                try r0.withUnsafePointer { (q0) throws(E) -> R in
                    try r1.withUnsafePointer { (q1) throws(E) -> R in
                        try body(p0, p1, p2, q0, q1)
                    }
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, _ w2: Tensor, reading r0: Tensor, _ r1: Tensor, _ r2: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>,
        UnsafePointer<Float>, UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try w2.withUnsafeMutablePointer { (p2) throws(E) -> R in
                try r0.withUnsafePointer { (q0) throws(E) -> R in
                    try r1.withUnsafePointer { (q1) throws(E) -> R in
                        try r2.withUnsafePointer { (q2) throws(E) -> R in
                            try body(p0, p1, p2, q0, q1, q2)
                        }
                    }
                }
            }
        }
    }
}

@inlinable @inline(__always)
public func withTensorPointers<R, E: Error>(
    writing w0: Tensor, _ w1: Tensor, _ w2: Tensor, reading r0: Tensor, _ r1: Tensor, _ r2: Tensor, _ r3: Tensor,
    _ body: (
        UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>,
        UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>
    ) throws(E) -> R
) throws(E) -> R {
    try w0.withUnsafeMutablePointer { (p0) throws(E) -> R in
        try w1.withUnsafeMutablePointer { (p1) throws(E) -> R in
            try w2.withUnsafeMutablePointer { (p2) throws(E) -> R in
                try r0.withUnsafePointer { (q0) throws(E) -> R in
                    try r1.withUnsafePointer { (q1) throws(E) -> R in
                        try r2.withUnsafePointer { (q2) throws(E) -> R in
                            try r3.withUnsafePointer { (q3) throws(E) -> R in
                                try body(p0, p1, p2, q0, q1, q2, q3)
                            }
                        }
                    }
                }
            }
        }
    }
}
