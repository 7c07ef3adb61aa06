import Foundation
import Synchronization

/// One recorded operation (or a leaf) in the reverse-mode graph.
///
/// A node exists only when some input of the operation requires a gradient, so a frozen-only
/// prefix of a network records nothing and keeps no activations alive. The backward closure
/// holds the activations it needs; it is released as soon as it has run, so memory falls as
/// backward proceeds.
// @unchecked Sendable: a graph is built and run backward by the thread that runs the step; workers
// touch only the buffers of the op they run.
public final class GradNode: @unchecked Sendable {
    /// Backward: given dL/d(output), returns dL/d(input) for each input whose `needs` flag is set.
    public typealias BackwardFunction = (_ outputGrad: Tensor, _ needs: [Bool]) -> [Tensor?]

    public let name: String
    public let isLeaf: Bool
    let shape: [Int]
    let inputs: [GradNode?]
    var backwardFunction: BackwardFunction?
    /// Gradient being accumulated for an interior node during one backward pass.
    var pendingGradient: Tensor?
    /// Leaf gradient: accumulated across backward passes until cleared.
    public private(set) var leafGradient: Tensor?
    /// When set, a leaf accumulates its gradient into this external buffer (e.g. the trainer's arena).
    public private(set) var boundGradient: Tensor?

    init(leafShape: [Int], name: String) {
        self.name = name
        isLeaf = true
        shape = leafShape
        inputs = []
    }

    init(shape: [Int], inputs: [GradNode?], name: String, backward: @escaping BackwardFunction) {
        self.name = name
        isLeaf = false
        self.shape = shape
        self.inputs = inputs
        backwardFunction = backward
    }

    /// Makes this leaf accumulate into `buffer` (same element count) instead of its own tensor.
    public func bindGradient(to buffer: Tensor) {
        precondition(isLeaf, "only leaves can bind gradient buffers")
        precondition(buffer.count == shapeElementCount(shape), "gradient buffer of \(buffer.count) for \(shape)")
        boundGradient = Tensor(storage: buffer.storage, offset: buffer.offset, shape: shape)
        leafGradient = boundGradient
    }

    /// Forgets the leaf's gradient (a bound buffer is zeroed instead).
    public func clearGradient() {
        if let bound = boundGradient {
            bound.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        } else {
            leafGradient = nil
        }
    }

    /// True while the backward closure (and the activations it holds) is still alive.
    public var holdsSavedState: Bool { backwardFunction != nil }

    func accumulateLeaf(_ g: Tensor) {
        if let existing = leafGradient {
            Kernels.addInPlace(existing, g)
        } else {
            // Always copy: an op may hand the same gradient tensor to several inputs.
            leafGradient = Tensor(storage: g.copy().storage, shape: shape)
        }
    }
}

/// Turns recording off for a scope (evaluation), whatever the inputs require.
public enum GradMode {
    /// Nesting depth of `withoutGradients` scopes; every op reads it, from any thread.
    static let disabledDepth = Atomic<Int>(0)

    public static var isEnabled: Bool { disabledDepth.load(ordering: .relaxed) == 0 }

    public static func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
        disabledDepth.add(1, ordering: .relaxed)
        defer { disabledDepth.subtract(1, ordering: .relaxed) }
        return try body()
    }
}

extension Tensor {
    /// Attaches a backward function to `output` when any input requires a gradient.
    ///
    /// The closure is built by the caller either way, but it is retained only when recorded, so a
    /// frozen-only computation drops its saved activations immediately.
    public static func record(
        _ output: Tensor, inputs: [Tensor], name: String, backward: @escaping GradNode.BackwardFunction
    ) -> Tensor {
        OpProfile.active?.forwardRecorded(name)
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return output }
        var out = output
        out.node = GradNode(shape: output.shape, inputs: inputs.map { $0.node }, name: name, backward: backward)
        return out
    }

    /// An op's result when nothing records it (frozen inputs, or gradients off): the op profile
    /// still gets its forward time, instead of the next op that records.
    public static func unrecorded(_ output: Tensor, name: String) -> Tensor {
        OpProfile.active?.forwardRecorded(name)
        return output
    }

    /// Whether an operation over these inputs will be recorded (so kernels can skip saving state).
    public static func willRecord(_ inputs: Tensor...) -> Bool {
        GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad })
    }

    /// Back-propagates from this tensor. A non-scalar root takes `seed` as dL/d(self) (ones when nil).
    ///
    /// `onLeafReady` is called once per leaf as soon as its gradient is final within this pass,
    /// so gradient communication can start while the rest of backward runs.
    public func backward(seed: Tensor? = nil, onLeafReady: ((GradNode) -> Void)? = nil) {
        guard let root = node else { return }
        let rootGrad = seed ?? Tensor(filling: 1, shape: shape)
        precondition(rootGrad.shape == shape || rootGrad.count == count, "seed shape \(rootGrad.shape) for \(shape)")

        // Topological order (iterative DFS) and the number of consumers of each node.
        var order: [GradNode] = []
        var consumers: [ObjectIdentifier: Int] = [:]
        var visited = Set<ObjectIdentifier>()
        var stack: [(GradNode, Int)] = [(root, 0)]
        visited.insert(ObjectIdentifier(root))
        while let (current, next) = stack.popLast() {
            if next < current.inputs.count {
                stack.append((current, next + 1))
                if let input = current.inputs[next] {
                    consumers[ObjectIdentifier(input), default: 0] += 1
                    if visited.insert(ObjectIdentifier(input)).inserted { stack.append((input, 0)) }
                }
            } else {
                order.append(current)
            }
        }

        root.pendingGradient = Tensor(storage: rootGrad.storage, offset: rootGrad.offset, shape: shape)
        var remaining = consumers

        // A leaf is final once every consumer has run: finish it right then.
        func consumerDone(_ input: GradNode) {
            let id = ObjectIdentifier(input)
            let left = remaining[id, default: 1] - 1
            remaining[id] = left
            if left == 0, input.isLeaf {
                if let g = input.pendingGradient {
                    input.pendingGradient = nil
                    input.accumulateLeaf(g)
                }
                onLeafReady?(input)
            }
        }

        /// Hands a node's input gradients to its inputs (summing where an input has several consumers).
        func propagate(_ current: GradNode, _ grads: [Tensor?]) {
            for (i, input) in current.inputs.enumerated() {
                guard let input else { continue }
                if i < grads.count, let gi = grads[i] {
                    precondition(
                        gi.count == shapeElementCount(input.shape),
                        "'\(current.name)' returned a gradient of \(gi.shape) for an input of \(input.shape)")
                    let shaped = Tensor(storage: gi.storage, offset: gi.offset, shape: input.shape)
                    if let existing = input.pendingGradient {
                        input.pendingGradient = Kernels.sum(existing, shaped)
                    } else {
                        input.pendingGradient = shaped
                    }
                }
                consumerDone(input)
            }
        }

        if root.isLeaf {
            root.pendingGradient = nil
            root.accumulateLeaf(rootGrad)
            onLeafReady?(root)
            return
        }
        for current in order.reversed() where !current.isLeaf {
            guard let g = current.pendingGradient else {
                // Nothing reached this node: its inputs get nothing from it either.
                current.backwardFunction = nil
                for case let input? in current.inputs { consumerDone(input) }
                continue
            }
            current.pendingGradient = nil
            guard let fn = current.backwardFunction else {
                preconditionFailure("backward through '\(current.name)' twice: its saved state was already released")
            }
            current.backwardFunction = nil  // frees the saved activations now
            let needs = current.inputs.map { $0 != nil }
            if let profile = OpProfile.active {
                profile.measureBackward(current.name) { propagate(current, fn(g, needs)) }
            } else {
                propagate(current, fn(g, needs))
            }
        }
    }
}
