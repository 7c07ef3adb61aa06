import Foundation
import VLTensor

/// Text-tower outputs of frozen text towers, per prompt, reused across steps and epochs.
///
/// When nothing trainable acts inside CLIPSeg's text tower (decoder-only training, vision-side
/// adapters, shallow text taps), a prompt's conditional embedding and its end-of-text hidden states
/// are a fixed function of its token ids, and datasets reuse a small set of prompts. Each missing
/// prompt is encoded on its own (a batch of one), so a prompt's entry has the same bits whichever
/// batch first asked for it: runs and resumed runs agree exactly with the cache on.
// @unchecked Sendable: every access to the entries holds `lock`.
public final class TextFeatureCache: @unchecked Sendable {
    struct Entry {
        /// text_projection(pooled), before any conditioning hook: [P].
        let conditional: [Float]
        /// Final-LayerNorm output at the pooling position (before the projection): [Dt].
        let pooled: [Float]
        /// Raw hidden state j (0 = block-0 input) at the end-of-text position by argmax: [L+1][Dt].
        let endOfTextStates: [[Float]]
    }

    private var entries: [[Int]: Entry] = [:]
    private let lock = NSLock()
    /// Stops storing (keeps computing one prompt at a time) past this many floats.
    public let budgetFloats: Int
    private var storedFloats = 0
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(budgetBytes: Int = 256 << 20) {
        budgetFloats = max(0, budgetBytes / 4)
    }

    func entry(_ key: [Int]) -> Entry? {
        lock.lock()
        defer { lock.unlock() }
        if let e = entries[key] {
            hits += 1
            return e
        }
        misses += 1
        return nil
    }

    func store(_ key: [Int], _ entry: Entry) {
        lock.lock()
        defer { lock.unlock() }
        let size =
            entry.conditional.count + entry.pooled.count + entry.endOfTextStates.reduce(0) { $0 + $1.count } + key.count
        guard entries[key] == nil, storedFloats + size <= budgetFloats else { return }
        entries[key] = entry
        storedFloats += size
    }
}

extension CLIPSegModel {
    /// True when no trainable tensor and no installed hook changes the text tower itself (a hook
    /// may still transform its outputs through `conditional`).
    public var textTowerIsFrozen: Bool {
        if let hooks, !hooks.textTowerIsFrozen { return false }
        return !parameters.trainableNames.contains {
            $0.hasPrefix("clip.text_model.") || $0.hasPrefix("clip.text_projection.")
        }
    }

    /// The conditional embedding from cached per-prompt text features (see `TextFeatureCache`).
    func cachedConditionalEmbeddings(_ prompts: TextPrompts, cache: TextFeatureCache, pixels: Tensor?) -> Tensor {
        let b = prompts.batchSize, p = config.projectionDim, dt = config.textConfig.hiddenSize
        var rows: [TextFeatureCache.Entry] = []
        for i in 0..<b {
            let length = max(1, min((prompts.attentionMask[i].lastIndex(of: 1) ?? 0) + 1, prompts.inputIDs[i].count))
            let ids = Array(prompts.inputIDs[i].prefix(length))
            let key = ids + [-1] + Array(prompts.attentionMask[i].prefix(length))
            if let e = cache.entry(key) {
                rows.append(e)
                continue
            }
            let one = TextPrompts(inputIDs: [ids], attentionMask: [Array(prompts.attentionMask[i].prefix(length))])
            let e: TextFeatureCache.Entry = GradMode.withoutGradients {
                let sequence = TextSequence(
                    tokens: textTokenEmbeddings(one, length: length), attentionMask: one.attentionMask,
                    poolingPositions: poolingPositions(one).map { min($0, length - 1) })
                let enc = encodeText(sequence, prompts: one, context: ForwardContext(pixels: nil, batchSize: 1))
                let cond = textProjection(enc.pooled, parameters)
                let eot = min(max(enc.argmaxPositions[0], 0), length - 1)
                return .init(
                    conditional: cond.scalars, pooled: enc.pooled.scalars,
                    endOfTextStates: enc.hiddenStates.map { Array($0.scalars[(eot * dt)..<((eot + 1) * dt)]) })
            }
            cache.store(key, e)
            rows.append(e)
        }
        var cond = Tensor(shape: [b, p], values: rows.flatMap(\.conditional))
        if let hooks {
            let layers = rows[0].endOfTextStates.count
            let states = (0..<layers).map { j in
                Tensor(shape: [b, 1, dt], values: rows.flatMap { $0.endOfTextStates[j] })
            }
            let pooled = Tensor(shape: [b, dt], values: rows.flatMap(\.pooled))
            let encoding = TextEncoding(
                hiddenStates: states, lastHidden: pooled.reshaped([b, 1, dt]), pooled: pooled,
                argmaxPositions: [Int](repeating: 0, count: b))
            cond = hooks.conditional(cond, text: encoding, context: ForwardContext(pixels: pixels, batchSize: b))
        }
        return cond
    }
}
