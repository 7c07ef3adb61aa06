import Foundation
import VLModels
import VLTensor

/// All trainable parameters in one contiguous block, like llm.c's single parameter buffer:
/// values, gradients and both Adam moments, each a flat float32 array in the same fixed order.
///
/// The order is the order the trainable tensors were registered, which is deterministic and
/// identical on every rank; `layoutHash` lets ranks verify that at start-up. Parameter tensors
/// in the model become views into `values`, and their autodiff leaves accumulate straight into
/// `gradients`, so an optimiser step and a gradient all-reduce are single passes over flat memory.
public final class ParameterArena {
    public struct Slot: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let slots: [Slot]
    public let count: Int
    public let values: Tensor
    public let gradients: Tensor
    public let firstMoment: Tensor
    public let secondMoment: Tensor
    private let slotIndex: [String: Int]
    /// The value ranges weight decay applies to; nil = all of them (`WeightDecayParams.decayedRanges`).
    public var decayedRanges: [Range<Int>]? = nil

    /// Moves `names` of `store` into the arena (copying their current values) and rebinds the
    /// store's tensors to arena views that require gradients.
    public init(store: ParameterStore, names: [String]) {
        var slots: [Slot] = []
        var offset = 0
        for name in names {
            let shape = store[name].shape
            slots.append(Slot(name: name, shape: shape, offset: offset))
            offset += shape.reduce(1, *)
        }
        self.slots = slots
        count = offset
        values = Tensor(zeros: [offset])
        gradients = Tensor(zeros: [offset])
        firstMoment = Tensor(zeros: [offset])
        secondMoment = Tensor(zeros: [offset])
        slotIndex = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($1.name, $0) })
        for slot in slots {
            let source = store[slot.name]
            withTensorPointers(writing: values, reading: source) {
                ($0 + slot.offset).update(from: $1, count: slot.count)
            }
            let view = Tensor(storage: values.storage, offset: slot.offset, shape: slot.shape).requiringGrad(
                name: slot.name)
            view.node!.bindGradient(to: Tensor(storage: gradients.storage, offset: slot.offset, shape: slot.shape))
            store.setTrainable(slot.name, view)
        }
    }

    public func slot(named name: String) -> Slot? { slotIndex[name].map { slots[$0] } }

    /// A named view of one slot in one of the flat arrays.
    public func view(_ array: Tensor, _ slot: Slot) -> Tensor {
        Tensor(storage: array.storage, offset: array.offset + slot.offset, shape: slot.shape)
    }

    public func zeroGradients() {
        gradients.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// Names and shapes, hashed: equal on every rank that built the same trainable layout.
    public var layoutHash: String {
        var h = FNV64()
        for slot in slots {
            h.add(slot.name)
            h.add(slot.shape.map(String.init).joined(separator: "x"))
        }
        return "\(slots.count) tensors, \(count) values, layout \(h.hex)"
    }

    /// Bytes one gradient all-reduce moves per optimiser step (4 per trainable parameter).
    public var bytesPerAllReduce: Int { count * 4 }
}

/// FNV-1a, 64 bit: a small, deterministic fingerprint for layouts and file contents.
public struct FNV64 {
    public private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    public init() {}

    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        value = h
    }

    public mutating func add(_ string: String) {
        var s = string + "\u{0}"
        s.withUTF8 { add(UnsafeRawBufferPointer($0)) }
    }

    public var hex: String { String(format: "%016llx", value) }
}
