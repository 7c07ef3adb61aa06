import Foundation
import VLTensor

/// Learned context tokens in CRIS's text encoder (CoOp / CoCoOp as TuneVLSeg applies them).
///
/// The model asks for the context of each depth once per forward pass; `c5` is the image
/// encoder's C5 (image-conditioned methods pool it), so one protocol serves both methods.
public protocol CRISTextContext: AnyObject {
    /// Context tokens per depth (n).
    var contextLength: Int { get }
    /// Rows of context: row 0 enters with the token embeddings, rows 1..<depth replace the context
    /// slots deeper in the encoder.
    var depth: Int { get }
    /// TuneVLSeg's deep-prompt indexing (block j+1 gets row j, and row 0 is also written over
    /// block 0's output) instead of the intended one (the input of block j gets row j).
    var compatIndexing: Bool { get }
    /// Context of depth `index` for a batch: [B, n, width].
    func context(index: Int, batchSize: Int, c5: Tensor) -> Tensor
    /// True when the context depends on the image (CoCoOp).
    var conditionsOnImages: Bool { get }
}

extension CRISTextContext {
    public var conditionsOnImages: Bool { false }
}

/// A trainable change to CRIS's logits (TuneVLSeg's additive decoder head).
public protocol CRISLogitsHead: AnyObject {
    /// The final logits [B, 1, H, W] given the frozen model's `logits` and the decoder's output
    /// `features` [B, D, h, w] (the projector's input).
    func logits(_ logits: Tensor, features: Tensor) -> Tensor
}

/// CRIS (CLIP RN50 image encoder + CLIP text transformer + FPN neck + vision-language decoder +
/// dynamic-convolution projector), as TuneVLSeg runs it, on the VLTensor engine.
///
/// Weights are addressed by their PyTorch state-dict names. Batch norms always use the running
/// statistics (the published runs keep CRIS in eval mode); dropout is off.
// @unchecked Sendable: as CLIPSegModel: configured before use, one forward pass at a time.
public final class CRISModel: @unchecked Sendable {
    public let config: CRISConfig
    public let parameters: ParameterStore
    /// CoOp/CoCoOp context (nil: the plain model).
    public var textContext: CRISTextContext?
    /// A head mixed into the logits (nil: the plain model).
    public var logitsHead: CRISLogitsHead?

    /// Sine position tables by size (constants: computed once per shape, not per forward pass).
    private var positionTables: [[Int]: Tensor] = [:]
    private let positionLock = NSLock()

    func positions(_ key: [Int], _ make: () -> Tensor) -> Tensor {
        positionLock.lock()
        defer { positionLock.unlock() }
        if let t = positionTables[key] { return t }
        let t = make()
        positionTables[key] = t
        return t
    }

    let stem: [(conv: CRISConv, bn: CRISBatchNorm)]
    let stages: [[Bottleneck]]
    let poolQ, poolK, poolV, poolOut: CRISLinear
    let poolConnect: (conv: CRISConv, bn: CRISBatchNorm)
    let textBlocks: [CLIPResidualBlock]
    let textFinalNorm: CRISLayerNorm
    let neck: Neck
    let decoderLayers: [CRISDecoderLayer]
    let decoderNorm: CRISLayerNorm
    let projVis1, projVis3: ConvBNReLU
    let projVis4: CRISConv
    let projTxt: CRISLinear

    struct Neck {
        let txtProj: CRISLinear
        let txtProjBN: CRISBatchNorm
        let f1, f2, f2Cat, f3, f3Cat, proj5, proj4, proj3, aggr, coord0, coord1: ConvBNReLU
        let norm: CRISBatchNorm

        init(_ c: CRISConfig) {
            let (i3, i4, i5) = (c.fpnIn[0], c.fpnIn[1], c.fpnIn[2]),
                (o3, o4, o5) = (c.fpnOut[0], c.fpnOut[1], c.fpnOut[2])
            let eps = c.batchNormEps
            txtProj = CRISLinear(name: "neck.txt_proj.0", inFeatures: c.wordDim, outFeatures: o5, hasBias: false)
            txtProjBN = CRISBatchNorm(prefix: "neck.txt_proj.1", channels: o5, eps: eps)
            f1 = ConvBNReLU("neck.f1_v_proj", i5, o5, kernel: 1, eps: eps)
            norm = CRISBatchNorm(prefix: "neck.norm_layer.0", channels: o5, eps: eps)
            f2 = ConvBNReLU("neck.f2_v_proj", i4, o4, kernel: 3, eps: eps)
            f2Cat = ConvBNReLU("neck.f2_cat", o4 + o5, o4, kernel: 1, eps: eps)
            f3 = ConvBNReLU("neck.f3_v_proj", i3, o3, kernel: 3, eps: eps)
            f3Cat = ConvBNReLU("neck.f3_cat", o3 + o4, o4, kernel: 1, eps: eps)
            proj5 = ConvBNReLU("neck.f4_proj5", o5, o4, kernel: 3, eps: eps)
            proj4 = ConvBNReLU("neck.f4_proj4", o4, o4, kernel: 3, eps: eps)
            proj3 = ConvBNReLU("neck.f4_proj3", o4, o4, kernel: 3, eps: eps)
            aggr = ConvBNReLU("neck.aggr", 3 * o4, o4, kernel: 1, eps: eps)
            coord0 = ConvBNReLU("neck.coordconv.0.conv1", o4 + 2, o4, kernel: 3, eps: eps)
            coord1 = ConvBNReLU("neck.coordconv.1", o4, o4, kernel: 3, eps: eps)
        }

        var parameterShapes: [ParameterShape] {
            txtProj.parameterShapes + txtProjBN.parameterShapes + f1.parameterShapes + norm.parameterShapes
                + [f2, f2Cat, f3, f3Cat, proj5, proj4, proj3, aggr, coord0, coord1].flatMap(\.parameterShapes)
        }
    }

    public convenience init(config: CRISConfig, parameters: ParameterStore) {
        self.init(config: config, parameters: parameters, repeatedLayers: true)
    }

    /// `repeatedLayers: false` builds only the layers that occur once (a skeleton for listing the
    /// parameters part by part, which must not build one struct per block of an unchecked config).
    fileprivate init(config: CRISConfig, parameters: ParameterStore, repeatedLayers: Bool) {
        self.config = config
        self.parameters = parameters
        let clip = config.clip, eps = config.batchNormEps, w = clip.visionWidth
        stem = [
            (
                CRISConv("backbone.visual.conv1", 3, w / 2, kernel: 3, stride: 2),
                CRISBatchNorm(prefix: "backbone.visual.bn1", channels: w / 2, eps: eps)
            ),
            (
                CRISConv("backbone.visual.conv2", w / 2, w / 2, kernel: 3),
                CRISBatchNorm(prefix: "backbone.visual.bn2", channels: w / 2, eps: eps)
            ),
            (
                CRISConv("backbone.visual.conv3", w / 2, w, kernel: 3),
                CRISBatchNorm(prefix: "backbone.visual.bn3", channels: w, eps: eps)
            ),
        ]
        stages =
            repeatedLayers
            ? clip.visionLayers.indices.map { s in
                (0..<clip.visionLayers[s]).map { Self.bottleneck(config, stage: s, index: $0) }
            } : []
        let c = clip.poolInputWidth, e = clip.embedDim
        poolQ = CRISLinear(name: "backbone.visual.attnpool.q_proj", inFeatures: c, outFeatures: c, hasBias: true)
        poolK = CRISLinear(name: "backbone.visual.attnpool.k_proj", inFeatures: c, outFeatures: c, hasBias: true)
        poolV = CRISLinear(name: "backbone.visual.attnpool.v_proj", inFeatures: c, outFeatures: c, hasBias: true)
        poolOut = CRISLinear(name: "backbone.visual.attnpool.c_proj", inFeatures: c, outFeatures: e, hasBias: true)
        poolConnect = (
            CRISConv("backbone.visual.attnpool.connect.0", c, e, kernel: 1),
            CRISBatchNorm(prefix: "backbone.visual.attnpool.connect.1", channels: e, eps: eps)
        )
        textBlocks = repeatedLayers ? (0..<clip.transformerLayers).map { Self.textBlock(config, $0) } : []
        textFinalNorm = CRISLayerNorm(name: "backbone.ln_final", width: clip.transformerWidth, eps: config.layerNormEps)
        neck = Neck(config)
        decoderLayers = repeatedLayers ? (0..<config.numLayers).map { Self.decoderLayer(config, $0) } : []
        decoderNorm = CRISLayerNorm(name: "decoder.norm", width: config.visDim, eps: config.layerNormEps)
        let d = config.visDim, inDim = config.projInDim, k = config.projKernelSize
        projVis1 = ConvBNReLU("proj.vis.1", d, d, kernel: 3, eps: eps)
        projVis3 = ConvBNReLU("proj.vis.3", d, inDim, kernel: 3, eps: eps)
        projVis4 = CRISConv("proj.vis.4", inDim, inDim, kernel: 1, bias: true)
        projTxt = CRISLinear(
            name: "proj.txt", inFeatures: config.wordDim, outFeatures: inDim * k * k + 1, hasBias: true)
    }

    // MARK: - Parameters

    // The repeated blocks, built by the model and, one at a time, by the parameter listing.

    /// Block `j` of ResNet stage `s`: the stage's first block takes the previous stage's output
    /// (the stem's for stage 0) through a projecting shortcut, with stride 2 after stage 0; the
    /// others keep planes x 4 channels.
    static func bottleneck(_ config: CRISConfig, stage s: Int, index j: Int) -> Bottleneck {
        let w = config.clip.visionWidth, planes = w << s
        let inplanes = j > 0 ? planes * 4 : (s == 0 ? w : (w << (s - 1)) * 4)
        return Bottleneck(
            prefix: "backbone.visual.layer\(s + 1).\(j)", inplanes: inplanes, planes: planes,
            stride: j == 0 && s > 0 ? 2 : 1, eps: config.batchNormEps)
    }

    static func textBlock(_ config: CRISConfig, _ i: Int) -> CLIPResidualBlock {
        CLIPResidualBlock(
            prefix: "backbone.transformer.resblocks.\(i)", width: config.clip.transformerWidth,
            heads: config.clip.transformerHeads, eps: config.layerNormEps)
    }

    static func decoderLayer(_ config: CRISConfig, _ i: Int) -> CRISDecoderLayer {
        CRISDecoderLayer(
            prefix: "decoder.layers.\(i)", width: config.visDim, heads: config.numHead, ffn: config.dimFFN,
            eps: config.layerNormEps)
    }

    /// Every float tensor of the state dict (parameters and BN statistics), in state-dict order.
    /// `num_batches_tracked` counters are not listed: they are unused in eval mode. Call on a
    /// validated config (`CRISConfig.validate`).
    public static func expectedParameters(_ config: CRISConfig) -> [(name: String, shape: [Int])] {
        config.parameterParts.flatMap { part in (0..<part.repeats).flatMap(part.shapes) }
    }

    /// The weights part by part, in state-dict order (see `ParameterPart`).
    static func parameterParts(_ config: CRISConfig) -> [ParameterPart] {
        let m = CRISModel(config: config, parameters: ParameterStore(), repeatedLayers: false)
        let clip = config.clip, c = clip.poolInputWidth, dt = clip.transformerWidth
        var parts: [ParameterPart] = [
            .once(
                [
                    ("backbone.positional_embedding", [clip.contextLength, dt]),
                    ("backbone.text_projection", [dt, clip.embedDim]),
                    ("backbone.logit_scale", []),
                ]
                    + m.stem.flatMap { $0.conv.parameterShapes + $0.bn.parameterShapes })
        ]
        // A stage's first block differs (stride, shortcut); the others are alike.
        for (s, blocks) in clip.visionLayers.enumerated() {
            parts.append(
                ParameterPart(repeats: min(blocks, 1)) { _ in bottleneck(config, stage: s, index: 0).parameterShapes })
            parts.append(
                ParameterPart(repeats: max(blocks - 1, 0)) {
                    bottleneck(config, stage: s, index: $0 + 1).parameterShapes
                })
        }
        parts += [
            .once(
                [("backbone.visual.attnpool.positional_embedding", [clip.positionGrid * clip.positionGrid + 1, c])]
                    + [m.poolK, m.poolQ, m.poolV, m.poolOut].flatMap(\.parameterShapes)
                    + m.poolConnect.conv.parameterShapes + m.poolConnect.bn.parameterShapes),
            ParameterPart(repeats: clip.transformerLayers) { textBlock(config, $0).parameterShapes },
            .once(
                [("backbone.token_embedding.weight", [clip.vocabSize, dt])] + m.textFinalNorm.parameterShapes
                    + m.neck.parameterShapes),
            ParameterPart(repeats: config.numLayers) { decoderLayer(config, $0).parameterShapes },
            .once(
                m.decoderNorm.parameterShapes + m.projVis1.parameterShapes + m.projVis3.parameterShapes
                    + m.projVis4.parameterShapes + m.projTxt.parameterShapes),
        ]
        return parts
    }

    /// Learnable parameters (BN statistics excluded): what `full` fine-tuning trains.
    public var learnableParameterNames: [String] { parameters.names.filter { !isBatchNormBuffer($0) } }

    /// Neck + decoder + projector: CRIS's `decoder`-style partial tuning.
    public var decoderParameterNames: [String] {
        learnableParameterNames.filter { $0.hasPrefix("neck.") || $0.hasPrefix("decoder.") || $0.hasPrefix("proj.") }
    }

    /// Loads a CRIS directory (config.json + model.safetensors); `num_batches_tracked` counters in the
    /// file are ignored.
    ///
    /// The config is validated and its parameter bytes compared with `memoryLimit` (default: this
    /// machine's memory) before anything is built from it (see `CLIPSegModel.load(directory:)`).
    public static func load(directory: URL, memoryLimit: UInt64 = MachineMemory.physical) throws -> CRISModel {
        let configURL = directory.appendingPathComponent("config.json")
        let config = try CRISConfig.load(from: configURL)
        try config.checkParameterMemory(file: configURL.path, memoryLimit: memoryLimit)
        let store = try ParameterStore.load(
            directory: directory, expected: expectedParameters(config),
            ignoring: { $0.hasSuffix(".num_batches_tracked") })
        return CRISModel(config: config, parameters: store)
    }

    // MARK: - Image encoder

    /// The image encoder's outputs.
    public struct VisualFeatures {
        public var c3: Tensor
        public var c4: Tensor
        public var c5: Tensor
        public init(c3: Tensor, c4: Tensor, c5: Tensor) {
            self.c3 = c3
            self.c4 = c4
            self.c5 = c5
        }
    }

    /// ModifiedResNet + CRIS attention pool: C3 (stage 2), C4 (stage 3), C5 (pooled stage 4).
    public func encodeImage(_ pixels: Tensor, observer: ForwardObserver? = nil) -> VisualFeatures {
        precondition(pixels.rank == 4 && pixels.shape[1] == 3, "pixel values must be [B, 3, H, W], got \(pixels.shape)")
        precondition(
            pixels.shape[2] % 32 == 0 && pixels.shape[3] % 32 == 0,
            "CRIS needs H and W divisible by 32, got \(pixels.shape[2])x\(pixels.shape[3])")
        let p = parameters
        var x = pixels
        for (conv, bn) in stem { x = bn(conv(x, p), p).relu() }
        x = avgPool2d(x, kernel: (2, 2))
        observer?("vis.stem", x)
        var outputs: [Tensor] = []
        for (s, blocks) in stages.enumerated() {
            for block in blocks { x = block(x, p) }
            outputs.append(x)
            if s == 0 { observer?("vis.layer1", x) }
        }
        observer?("vis.C3", outputs[1])
        observer?("vis.C4", outputs[2])
        observer?("vis.layer4", outputs[3])
        let c5 = attentionPool(outputs[3], observer: observer)
        observer?("vis.C5", c5)
        return VisualFeatures(c3: outputs[1], c4: outputs[2], c5: c5)
    }

    /// The attention pool's learned positions (class row dropped) resized to an h x w grid: [C, h*w].
    func poolPositions(height h: Int, width w: Int) -> Tensor {
        let table = parameters["backbone.visual.attnpool.positional_embedding"]
        let s = config.clip.positionGrid, c = config.clip.poolInputWidth
        let grid = table.slice(axis: 0, 1..<(s * s + 1)).reshaped([s, s, c]).permuted([2, 0, 1])
        let resized = (h == s && w == s) ? grid : grid.resized(to: (h, w), mode: .bicubic, alignCorners: false)
        return resized.reshaped([c, h * w])
    }

    /// CRIS's attention pool: full self-attention over the h*w tokens (no class token), projected,
    /// plus a 1x1-conv + BN shortcut, then ReLU: [B, E, h, w].
    func attentionPool(_ x: Tensor, observer: ForwardObserver?) -> Tensor {
        let p = parameters
        let b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], e = config.clip.embedDim
        let residual = poolConnect.bn(poolConnect.conv(x, p), p)
        observer?("vis.attnpool_connect", residual)
        let pos = poolPositions(height: h, width: w)
        observer?("vis.attnpool_pos", pos.reshaped([1, c, h * w]))
        let tokens = (x.reshaped([b, c, h * w]) + pos).transposed(1, 2)  // [B, hw, C]
        let attended = multiHeadAttention(
            query: poolQ(tokens, p), key: poolK(tokens, p), value: poolV(tokens, p),
            heads: config.clip.visionHeads)
        let projected = poolOut(attended, p).transposed(1, 2).reshaped([b, e, h, w])
        return (projected + residual).relu()
    }

    // MARK: - Text encoder

    /// Token embeddings (no positions) of the first `length` ids of each row: [B, length, Dt].
    public func tokenEmbeddings(_ prompts: TextPrompts, length: Int) -> Tensor {
        precondition(prompts.inputIDs.allSatisfy { $0.count >= length }, "prompt rows shorter than \(length)")
        let ids = prompts.inputIDs.flatMap { Array($0.prefix(length)) }
        return parameters["backbone.token_embedding.weight"].indexSelect(rows: ids)
            .reshaped([prompts.batchSize, length, config.clip.transformerWidth])
    }

    /// What the text encoder hands on: per-token features for the decoder, the projected
    /// end-of-text `state`, and the padding mask the decoder must use (1 keep, 0 pad).
    public struct TextFeatures {
        public var words: Tensor
        public var state: Tensor
        public var keepMask: Tensor
    }

    /// CLIP's text transformer on token embeddings [B, L, Dt] (any L up to the context length), with
    /// the context of `textContext` inserted after BOS when one is installed.
    public func encodeText(
        tokenEmbeddings: Tensor, prompts: TextPrompts, c5: Tensor,
        observer: ForwardObserver? = nil
    ) -> TextFeatures {
        let b = tokenEmbeddings.shape[0], length = tokenEmbeddings.shape[1]
        let maxLength = config.clip.contextLength
        precondition(length <= maxLength, "text of \(length) tokens exceeds the context length \(maxLength)")
        observer?("text.token_embeds", tokenEmbeddings)
        let eos = prompts.argmaxPositions
        // 1 = keep: TuneVLSeg masks exactly where the attention mask is 0.
        var keep = prompts.attentionMask.map { row in (0..<length).map { $0 < row.count ? Float(row[$0]) : 0 } }
        var x = tokenEmbeddings
        let context = textContext.flatMap { $0.contextLength > 0 && $0.depth > 0 ? $0 : nil }
        let n = context?.contextLength ?? 0
        var contexts: [Tensor] = []
        if let context {
            contexts = (0..<context.depth).map { context.context(index: $0, batchSize: b, c5: c5) }
            // BOS, context, the tokens that still fit, and the last position.
            let middleEnd = min(maxLength - n, length) - 1
            var parts = [x.slice(axis: 1, 0..<1), contexts[0]]
            if middleEnd > 1 { parts.append(x.slice(axis: 1, 1..<middleEnd)) }
            parts.append(x.slice(axis: 1, (length - 1)..<length))
            x = concat(parts, axis: 1)
            keep = keep.map { row in Array(([Float](repeating: 1, count: n) + row).prefix(x.shape[1])) }
        }
        let total = x.shape[1]
        x = x + parameters["backbone.positional_embedding"].slice(axis: 0, 0..<total)
        let keepMask = Tensor(shape: [b, total], values: keep.flatMap { $0 })
        func overwrite(_ x: Tensor, with ctx: Tensor) -> Tensor {
            concat([x.slice(axis: 1, 0..<1), ctx, x.slice(axis: 1, (n + 1)..<total)], axis: 1)
        }
        for (j, block) in textBlocks.enumerated() {
            if let context, !context.compatIndexing, j >= 1, j < context.depth { x = overwrite(x, with: contexts[j]) }
            x = block(x, parameters, keyMask: keepMask)
            if let observer { observer("text.block_out.\(j)", x.transposed(0, 1)) }
            if let context, context.compatIndexing, j < context.depth { x = overwrite(x, with: contexts[j]) }
        }
        let words = textFinalNorm(x, parameters)
        observer?("text.word_feats", words)
        let pooled = words.selectPerBatch(eos.map { min($0 + n, total - 1) })
        let state = matmul(pooled, parameters["backbone.text_projection"])
        observer?("text.state", state)
        return TextFeatures(words: words, state: state, keepMask: keepMask)
    }

    // MARK: - Neck, decoder, projector

    /// FPN neck with the text gate on C5 and coordinate channels: [B, vis_dim, H/16, W/16].
    public func neck(_ v: VisualFeatures, state: Tensor, observer: ForwardObserver? = nil) -> Tensor {
        let p = parameters, nk = neck
        let b = state.shape[0]
        let gate = nk.txtProjBN(nk.txtProj(state, p), p).relu()
        observer?("neck.txt_proj", gate)
        var f5 = nk.f1(v.c5, p)
        observer?("neck.f1_v_proj", f5)
        f5 = nk.norm(f5 * gate.reshaped([b, gate.shape[1], 1, 1]), p).relu()
        observer?("neck.f5", f5)
        var f4 = nk.f2(v.c4, p)
        observer?("neck.f2_v_proj", f4)
        f4 = nk.f2Cat(concat([f4, upsample2(f5)], axis: 1), p)
        observer?("neck.f4", f4)
        var f3 = nk.f3(v.c3, p)
        observer?("neck.f3_v_proj", f3)
        f3 = avgPool2d(f3, kernel: (2, 2))
        f3 = nk.f3Cat(concat([f3, f4], axis: 1), p)
        observer?("neck.f3", f3)
        let fq5 = nk.proj5(f5, p), fq4 = nk.proj4(f4, p), fq3 = nk.proj3(f3, p)
        observer?("neck.fq5", fq5)
        observer?("neck.fq4", fq4)
        observer?("neck.fq3", fq3)
        var fq = nk.aggr(concat([fq3, fq4, upsample2(fq5)], axis: 1), p)
        observer?("neck.aggr", fq)
        fq = nk.coord0(concat([fq, Self.coordinates(batch: b, height: fq.shape[2], width: fq.shape[3])], axis: 1), p)
        observer?("neck.coordconv0", fq)
        fq = nk.coord1(fq, p)
        observer?("neck.out", fq)
        return fq
    }

    /// x2 bilinear upsampling (align_corners false), as `F.interpolate(scale_factor=2)`.
    func upsample2(_ x: Tensor) -> Tensor { x.resized(to: (x.shape[2] * 2, x.shape[3] * 2), mode: .bilinear) }

    /// CoordConv channels: x = linspace(-1, 1, W) along columns, then y = linspace(-1, 1, H) along rows.
    static func coordinates(batch: Int, height h: Int, width w: Int) -> Tensor {
        func linspace(_ n: Int, _ i: Int) -> Float { n > 1 ? Float(-1 + 2 * Double(i) / Double(n - 1)) : -1 }
        var v = [Float](repeating: 0, count: batch * 2 * h * w)
        for bi in 0..<batch {
            for y in 0..<h {
                for x in 0..<w {
                    v[((bi * 2) * h + y) * w + x] = linspace(w, x)
                    v[((bi * 2 + 1) * h + y) * w + x] = linspace(h, y)
                }
            }
        }
        return Tensor(shape: [batch, 2, h, w], values: v)
    }

    /// The vision-language decoder: [B, d, h, w] query features attend to the words: [B, d, h, w].
    public func decode(_ fq: Tensor, text: TextFeatures, observer: ForwardObserver? = nil) -> Tensor {
        let b = fq.shape[0], d = fq.shape[1], h = fq.shape[2], w = fq.shape[3], length = text.words.shape[1]
        let visPos = positions([2, d, h, w]) { SinePositions.twoD(width: d, height: h, width: w) }
        let txtPos = positions([1, d, length]) { SinePositions.oneD(width: d, length: length) }
        observer?("decoder.vis_pos", visPos.reshaped([h * w, 1, d]))
        observer?("decoder.txt_pos", txtPos.reshaped([length, 1, d]))
        var v = fq.reshaped([b, d, h * w]).transposed(1, 2)  // [B, HW, d]
        for (l, layer) in decoderLayers.enumerated() {
            v = layer(vis: v, txt: text.words, visPos: visPos, txtPos: txtPos, textMask: text.keepMask, parameters)
            if let observer { observer("decoder.layer_out.\(l)", v.transposed(0, 1)) }
        }
        let out = decoderNorm(v, parameters).transposed(1, 2)  // [B, d, HW]
        observer?("decoder.out", out)
        return out.reshaped([b, d, h, w])
    }

    /// The projector: upsampled visual features x4, convolved per image with a kernel predicted
    /// from `state`: [B, 1, 4h, 4w].
    public func project(_ x: Tensor, state: Tensor, observer: ForwardObserver? = nil) -> Tensor {
        let p = parameters
        var v = projVis1(upsample2(x), p)
        v = projVis3(upsample2(v), p)
        v = projVis4(v, p)
        observer?("proj.vis_out", v)
        let t = projTxt(state, p)
        observer?("proj.txt_out", t)
        let b = v.shape[0], c = config.projInDim, k = config.projKernelSize, kk = c * k * k
        let weights = t.slice(axis: 1, 0..<kk).reshaped([b, c, k, k])
        let biases = t.slice(axis: 1, kk..<(kk + 1)).reshaped([b])
        observer?("proj.dyn_weight", weights)
        observer?("proj.dyn_bias", biases)
        let outputs = (0..<b).map { i in
            conv2d(
                v.slice(axis: 0, i..<(i + 1)), weight: weights.slice(axis: 0, i..<(i + 1)),
                bias: biases.slice(axis: 0, i..<(i + 1)), padding: (k / 2, k / 2))
        }
        let out = b == 1 ? outputs[0] : concat(outputs, axis: 0)
        observer?("proj.out", out)
        return out
    }

    // MARK: - Whole model

    /// Everything after the image encoder: text, neck, decoder, projector, and the bicubic
    /// (align_corners) upsampling to `outputSize`: logits [B, 1, H, W].
    public func segment(
        visual: VisualFeatures, tokenEmbeddings: Tensor, prompts: TextPrompts,
        outputSize: (Int, Int), observer: ForwardObserver? = nil
    ) -> Tensor {
        let text = encodeText(tokenEmbeddings: tokenEmbeddings, prompts: prompts, c5: visual.c5, observer: observer)
        let fq = neck(visual, state: text.state, observer: observer)
        let decoded = decode(fq, text: text, observer: observer)
        let pred = project(decoded, state: text.state, observer: observer)
        var logits = pred.resized(to: outputSize, mode: .bicubic, alignCorners: true)
        if let logitsHead { logits = logitsHead.logits(logits, features: decoded) }
        observer?("logits", logits)
        return logits
    }

    /// Text length a batch needs: up to the last attended token (results do not depend on the
    /// padding once it is masked, so trimming only saves work).
    public static func textLength(_ prompts: TextPrompts, trimPadding: Bool) -> Int {
        let full = prompts.inputIDs.first?.count ?? 0
        return trimPadding ? max(1, min(prompts.attendedLength, full)) : full
    }

    /// Text-prompted segmentation logits [B, 1, H, W] at the input size.
    public func callAsFunction(
        pixels: Tensor, text prompts: TextPrompts, trimPadding: Bool = true,
        observer: ForwardObserver? = nil
    ) -> Tensor {
        let visual = encodeImage(pixels, observer: observer)
        let embeddings = tokenEmbeddings(prompts, length: Self.textLength(prompts, trimPadding: trimPadding))
        return segment(
            visual: visual, tokenEmbeddings: embeddings, prompts: prompts,
            outputSize: (pixels.shape[2], pixels.shape[3]), observer: observer)
    }
}
