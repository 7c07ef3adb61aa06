import ArgumentParser
import Foundation
import VLData
import VLDistributed
import VLModels
import VLTensor
import VLTokenizer
import VLTrain

/// `vlseg bench step` / `vlseg bench infer`: training-step and inference throughput on synthetic data.
struct BenchStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time training steps (forward, backward, all-reduce, AdamW) of a tuning method on synthetic data.",
        discussion: "Run under mpirun for several ranks. With --json the last line is one JSON object.")

    @OptionGroup var common: BenchModelOptions

    @Option(help: "Tuning method (tuning=NAME), with tuning.KEY=VALUE arguments for its options.")
    var tuning: String = "vlsm_dense_vl"

    @Argument(help: "Tuning options: tuning.KEY=VALUE.")
    var tuningOptions: [String] = []

    @Flag(
        help:
            "Serve the frozen vision features from the feature cache, as from the second epoch on (methods that leave the vision tower frozen)."
    )
    var cached = false

    @Flag(help: "Also print where the timed steps' time goes, per op (forward and backward milliseconds per step).")
    var profile = false

    @Flag(
        help:
            "Under mpirun: also time rank 0 alone (the other ranks sleeping), alternating with all ranks together, and print the weak-scaling efficiency."
    )
    var scaling = false

    @Option(help: "With --scaling: rounds of (alone, together) phases of --steps steps each.")
    var rounds: Int = 3

    func run() throws {
        try reportingErrors {
            try common.run(
                training: true, tuning: tuning, tuningOptions: tuningOptions, cached: cached, profile: profile,
                scaling: scaling, rounds: rounds)
        }
    }
}

struct BenchInferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer", abstract: "Time inference (text-prompted segmentation) on synthetic data.")

    @OptionGroup var common: BenchModelOptions

    @Flag(help: "Also print where the timed passes' time goes, per op (milliseconds per pass).")
    var profile = false

    func run() throws {
        try reportingErrors {
            try common.run(training: false, tuning: "zero_shot", tuningOptions: [], profile: profile)
        }
    }
}

struct BenchModelOptions: ParsableArguments {
    @Option(
        help:
            "Model architecture preset: CLIPSeg tiny|small|base or cris-tiny|cris-base (created once in $VLSEG_CACHE/bench, memory-mapped like a real checkpoint)."
    )
    var preset: String = "base"

    @Option(help: "A model directory instead of --preset.")
    var model: String?

    @Option(help: "Images per rank per step.")
    var batch: Int = 4

    @Option(help: "Input side in pixels.")
    var size: Int = 352

    @Option(help: "Timed steps.")
    var steps: Int = 5

    @Option(help: "Untimed warm-up steps.")
    var warmup: Int = 1

    @Option(help: "Threads per rank (default: cores / ranks on this machine).")
    var threads: Int?

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    @OptionGroup var precisionOption: PrecisionOption
    var precision: MatmulPrecision { precisionOption.precision }

    func modelDirectory(comm: Communicator) throws -> URL {
        if let model { return URL(fileURLWithPath: model) }
        let write: (URL) throws -> Void
        let dirName: String
        if let p = CLIPSegPreset(rawValue: preset) {
            dirName = "clipseg-\(p.rawValue)"
            write = { try CLIPSegInitializer.write(config: p.config, seed: 0, to: $0, processorSize: p.processorSize) }
        } else if let p = CRISPreset(rawValue: preset) {
            dirName = p.rawValue
            write = { try CRISInitializer.write(config: p.config, seed: 0, to: $0) }
        } else {
            let names = CLIPSegPreset.allCases.map(\.rawValue) + CRISPreset.allCases.map(\.rawValue)
            throw ValidationError("unknown preset '\(preset)'; choose one of \(names.joined(separator: ", "))")
        }
        let cache =
            ProcessInfo.processInfo.environment["VLSEG_CACHE"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/vlseg")
        let dir = cache.appendingPathComponent("bench/\(dirName)")
        try comm.rootDecides("bench model") {
            guard !ModelWeights.exist(in: dir) else { return }
            printError("creating the \(preset) model in \(dir.path) (once)")
            try write(dir)
        }
        return dir
    }

    func run(
        training: Bool, tuning: String, tuningOptions: [String], cached: Bool = false, profile: Bool = false,
        scaling: Bool = false, rounds: Int = 3
    ) throws {
        let comm = Communicators.make(timeout: 600)
        ComputeThreads.set(threads ?? ComputeThreads.defaultCount(for: comm.localSize))
        if scaling && comm.size < 2 {
            throw ValidationError(
                "--scaling compares rank 0 alone with all ranks together: run it under mpirun with at least 2 ranks")
        }
        if scaling && rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        try precisionOption.apply()
        defer { try? MatmulPrecision.set(.fp32) }
        let workload = try BenchWorkload.prepare(
            self, comm: comm, training: training, tuning: tuning, tuningOptions: tuningOptions,
            cached: cached, scaling: scaling)
        let opProfile = profile ? OpProfile() : nil
        defer { OpProfile.active = nil }
        let measurement = try workload.measure(
            warmup: warmup, steps: steps, rounds: scaling ? rounds : 1, scaling: scaling,
            profile: opProfile)
        guard comm.isRoot else { return }
        try BenchReport(
            options: self, workload: workload, measurement: measurement, tuning: tuning, opProfile: opProfile
        ).print()
    }
}

/// What `bench step` / `bench infer` time: the model and trainable tensors set up as the trainer sets
/// them up, one synthetic batch, and the trainer's own `TrainingStep`.
struct BenchWorkload {
    let comm: Communicator
    let model: SegmentationModel
    let batch: Batch
    let trainableCount: Int
    let cached: Bool
    /// The step with every rank (nil for inference).
    let step: TrainingStep?
    /// With --scaling: the same step with rank 0 alone (a one-process communicator).
    let soloStep: TrainingStep?

    var training: Bool { step != nil }

    static func prepare(
        _ options: BenchModelOptions, comm: Communicator, training: Bool, tuning: String, tuningOptions: [String],
        cached: Bool, scaling: Bool
    ) throws -> BenchWorkload {
        let dir = try options.modelDirectory(comm: comm)
        let m = try ModelDirectory.load(dir)
        let size = options.size, batchSize = options.batch
        try m.validateInputSize(size)
        var names: [String] = []
        var visionFrozen = true
        if training {
            let resolved = try ConfigLoader(configDir: nil).load(overrides: ["tuning=\(tuning)"] + tuningOptions)
            let (method, trainable) = try RunSetup.tuning(resolved.config.tuning, seed: 0, model: m)
            names = trainable
            visionFrozen = method.visionIsFrozen
        }
        if cached && !visionFrozen {
            throw ValidationError(
                "--cached: tuning '\(tuning)' trains tensors inside the vision tower, so its features cannot be cached")
        }
        let tokenizer = try CLIPTokenizer(directory: dir)
        let texts = ["a photo of a polyp", "left ventricle endocardium", "benign breast tumour", "a skin lesion"]
        let prompts = (0..<batchSize).map { texts[$0 % texts.count] }
        let encodings = tokenizer.encodeBatch(prompts, padding: .longest(max: 77))
        var rng = SplitMix64(seed: UInt64(17 + comm.rank))
        let pixels = Tensor.randomNormal([batchSize, 3, size, size], generator: &rng)
        let target = Tensor(
            shape: [batchSize, size, size],
            values: (0..<(batchSize * size * size)).map { i in
                let x = i % size, y = (i / size) % size
                return (x - size / 2) * (x - size / 2) + (y - size / 3) * (y - size / 3) < size * size / 16 ? 1 : 0
            })
        let batch = Batch(
            synthetic: pixels, masks: target, prompts: prompts, inputIDs: encodings.map(\.inputIDs),
            attentionMask: encodings.map(\.attentionMask))
        // As the trainer does at start-up: every rank proves it holds the same frozen weights (which
        // reads every frozen page once, so those pages are resident and shared by the ranks).
        try comm.verifySame("the frozen model weights", fingerprint: m.parameters.fingerprint(excluding: Set(names)))
        // With --cached, the features are computed once here (the first epoch) and served from the
        // cache in every timed step, exactly as the trainer does from the second epoch on.
        let cache =
            cached
            ? FeatureCache(
                count: batchSize, budgetBytes: 8 << 30, directory: FileManager.default.temporaryDirectory,
                name: "bench-rank\(comm.rank)") : nil
        if let cache {
            _ = try cache.features(samples: batch.sampleIndices) { m.frozenFeatures(pixels: pixels) }
            // Frozen text towers: per-prompt features from the first epoch on, as in training.
            (m as? CLIPSegModel)?.textCache = TextFeatureCache()
        }
        var step: TrainingStep?, soloStep: TrainingStep?
        if !names.isEmpty {
            let arena = ParameterArena(store: m.parameters, names: names)
            var nodes: [String: GradNode] = [:]
            for n in names { nodes[n] = m.parameters[n].node }
            func makeStep(_ c: Communicator) -> TrainingStep {
                TrainingStep(
                    model: m, arena: arena,
                    sync: GradientSynchronizer(
                        arena: arena, comm: c, bucketBytes: 25 << 20, overlap: true, nodes: nodes),
                    loss: SegmentationLoss(), cache: cache, clipGradNorm: 0.5)
            }
            step = makeStep(comm)
            // --scaling: rank 0 alone, its gradients reduced over itself only.
            soloStep = scaling ? makeStep(SingleProcessCommunicator()) : nil
        }
        return BenchWorkload(
            comm: comm, model: m, batch: batch, trainableCount: step?.arena.count ?? 0,
            cached: cached, step: step, soloStep: soloStep)
    }

    /// One training step through `step` (or one inference pass when there is none), timed.
    func runOnce(_ step: TrainingStep?, optimizer: inout AdamW, profile: OpProfile?) throws -> StepTimes {
        let flops0 = BLAS.flopCount
        if let profile {
            OpProfile.active = profile
            profile.startForward()
        }
        defer { OpProfile.active = nil }
        var times = StepTimes()
        if let step {
            let outcome = try step.run(accumulate: 1, optimizer: &optimizer, lr: 1e-4) { batch }
            times.forward = outcome.forward
            times.backward = outcome.backward
            times.wait = outcome.allReduceWait
            times.optimizer = outcome.optimizer
            // The synthetic batch is handed over, not loaded: its microseconds are not the step's.
            times.steps = [outcome.total - outcome.data]
        } else {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try GradMode.withoutGradients { try TrainingStep.logits(model, batch, cache: nil) }
            times.forward = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            times.steps = [times.forward]
        }
        times.flops = BLAS.flopCount - flops0
        return times
    }

    /// Warm-up, then `rounds` rounds of `steps` timed steps with every rank (and, with `scaling`, as
    /// many with rank 0 alone), then the totals every rank contributes to.
    func measure(warmup: Int, steps: Int, rounds: Int, scaling: Bool, profile: OpProfile?) throws -> BenchMeasurement {
        var optimizer = AdamW(weightDecay: 1e-3)
        var result = BenchMeasurement()
        // The references (sgemm, FMA peak) are measured before and after the steps and the better
        // of the two kept: on a shared machine a neighbour can take a core for one of them, which
        // would otherwise show as a utilisation above 100 %.
        let before = ComputeReference.measure()
        var warmupSeconds = 0.0
        for _ in 0..<warmup {
            comm.barrier(label: "bench step")
            warmupSeconds = max(warmupSeconds, try runOnce(step, optimizer: &optimizer, profile: nil).total)
        }
        // The other ranks wait out rank 0's alone phase in one collective: the watchdog must allow it.
        if scaling { comm.timeout = max(comm.timeout, 4 * warmupSeconds * Double(steps) + 60) }
        let imagesPerRound = Double(batch.count * steps)
        // --scaling: rank 0 alone (the other ranks sleep, leaving their cores idle as a one-rank job
        // would) and all ranks together, alternating which comes first, so both are measured under
        // the same conditions of a shared machine.
        for round in 0..<rounds {
            var alone = StepTimes(), together = StepTimes()
            func runAlone() throws {
                comm.barrier(label: "bench alone phase")
                if comm.isRoot {
                    for _ in 0..<steps { alone.add(try runOnce(soloStep, optimizer: &optimizer, profile: nil)) }
                }
                comm.idleBarrier(label: "bench alone phase")
            }
            if scaling && round % 2 == 0 { try runAlone() }
            for _ in 0..<steps {
                comm.barrier(label: "bench step")
                together.add(try runOnce(step, optimizer: &optimizer, profile: profile))
            }
            if scaling && round % 2 == 1 { try runAlone() }
            result.together.add(together)
            result.alone.add(alone)
            if scaling {
                result.scalingRounds.append(
                    ScalingRound(alone: imagesPerRound / alone.total, together: imagesPerRound / together.total))
            }
        }
        // Memory of the training state, before the reference sgemm allocates its own matrices.
        let rankPSS = ProcessMemory.pssMB, rankPeakRSS = ProcessMemory.peakRSSMB
        result.reference = ComputeReference.best(before, .measure())
        var totals = [rankPSS, result.imagesPerSecondPerRank(batch: batch.count)]
        comm.allReduceSum(&totals, label: "bench totals")
        result.memory = MemoryFigures(rankPSS: rankPSS, rankPeakRSS: rankPeakRSS, totalPSS: totals[0])
        result.imagesPerSecondTotal = totals[1]
        // Every rank's compute and wait seconds, so an imbalance between ranks shows as such.
        var perRankTimes = [Double](repeating: 0, count: 2 * comm.size)
        let t = result.together
        perRankTimes[2 * comm.rank] = t.forward + t.backward + t.optimizer
        perRankTimes[2 * comm.rank + 1] = t.wait
        comm.allReduceSum(&perRankTimes, label: "bench per-rank times")
        result.ranks = (0..<comm.size).map { RankTimes(compute: perRankTimes[2 * $0], wait: perRankTimes[2 * $0 + 1]) }
        return result
    }
}

/// Rank 0 alone against every rank together, images/s per rank, in one round.
struct ScalingRound {
    var alone: Double
    var together: Double
}

/// A rank's compute and all-reduce wait seconds over the timed steps.
struct RankTimes {
    var compute: Double
    var wait: Double
}

/// Memory of the training state (MB).
struct MemoryFigures {
    var rankPSS = 0.0
    var rankPeakRSS = 0.0
    /// PSS summed over ranks: what the job costs the machine, shared pages counted once.
    var totalPSS = 0.0
}

/// The machine's yardsticks in this process: sgemm on the ViT's largest product and the FMA peak (GFLOP/s).
struct ComputeReference {
    var sgemm = 0.0
    var fmaPeak = 0.0

    static func measure() -> ComputeReference {
        ComputeReference(
            sgemm: GEMMBenchmark.measure(GEMMBenchmark.vitShapes[GEMMBenchmark.vitShapes.count - 1], minSeconds: 0.3),
            fmaPeak: FMAPeak.measure(threads: ComputeThreads.count, minSeconds: 0.2))
    }

    static func best(_ a: ComputeReference, _ b: ComputeReference) -> ComputeReference {
        ComputeReference(sgemm: max(a.sgemm, b.sgemm), fmaPeak: max(a.fmaPeak, b.fmaPeak))
    }
}

/// Everything a bench run measured.
struct BenchMeasurement {
    var together = StepTimes()
    var alone = StepTimes()
    var scalingRounds: [ScalingRound] = []
    var reference = ComputeReference()
    var memory = MemoryFigures()
    var imagesPerSecondTotal = 0.0
    var ranks: [RankTimes] = []

    func imagesPerSecondPerRank(batch: Int) -> Double {
        Double(batch * together.steps.count) / max(together.total, 1e-9)
    }
    func aloneImagesPerSecond(batch: Int) -> Double { Double(batch * alone.steps.count) / max(alone.total, 1e-9) }
}

/// Rank 0's printout of a bench run (and the JSON line with --json).
struct BenchReport {
    let options: BenchModelOptions
    let workload: BenchWorkload
    let measurement: BenchMeasurement
    let tuning: String
    let opProfile: OpProfile?

    func print() throws {
        let m = measurement, t = m.together, batch = workload.batch.count, comm = workload.comm
        let total = t.total
        let images = Double(batch * t.steps.count)
        let perRank = m.imagesPerSecondPerRank(batch: batch)
        let gflops = t.flops / max(total, 1e-9) / 1e9
        let sgemm = m.reference.sgemm, peak = m.reference.fmaPeak
        let training = workload.training
        let what =
            (training ? "training step (\(tuning), \(workload.trainableCount.grouped) trainable)" : "inference")
            + (workload.cached ? ", vision features from the feature cache" : "")
        func pct(_ x: Double) -> String { String(format: "%.1f%%", 100 * x / max(total, 1e-9)) }
        let architecture: String
        if let clipseg = workload.model as? CLIPSegModel {
            architecture =
                "CLIPSeg \(clipseg.config.visionConfig.hiddenSize)-wide ViT/\(clipseg.config.visionConfig.patchSize.map(String.init) ?? "?")"
        } else if let cris = workload.model as? CRISModel {
            architecture = "CRIS, ResNet width \(cris.config.clip.visionWidth) layers \(cris.config.clip.visionLayers)"
        } else {
            architecture = workload.model.architectureName
        }
        Swift.print(
            "\(what): \(architecture), \(options.size)x\(options.size), batch \(batch) per rank, \(comm.size) rank(s) x \(ComputeThreads.count) thread(s), OpenBLAS \(BLAS.coreName)"
                + (options.precision == .bf16 ? ", bf16 products (their peak is twice the float32 FMA peak below)" : "")
        )
        Swift.print(String(format: "  %.2f images/s per rank, %.2f images/s total", perRank, m.imagesPerSecondTotal))
        Swift.print(
            "  time: data 0.0% (synthetic), forward \(pct(t.forward)), backward \(pct(t.backward)), all-reduce wait \(pct(t.wait)), optimiser \(pct(t.optimizer))"
        )
        let stepCount = Double(max(t.steps.count, 1))
        if training && comm.size > 1 {
            let perStep = m.ranks.enumerated().map { r, times in
                String(format: "rank %d %.3f s + %.3f s", r, times.compute / stepCount, times.wait / stepCount)
            }
            Swift.print("  per step, compute + all-reduce wait: " + perStep.joined(separator: ", "))
        }
        let alone = m.aloneImagesPerSecond(batch: batch)
        if !m.scalingRounds.isEmpty {
            let rounds = m.scalingRounds.map { String(format: "%.3f / %.3f", $0.alone, $0.together) }.joined(
                separator: ", ")
            Swift.print(
                String(
                    format:
                        "  weak scaling: rank 0 alone %.3f images/s, with %d ranks %.3f images/s per rank = %.1f%% (%d alternating rounds of %d steps, alone / together: %@)",
                    alone, comm.size, perRank, 100 * perRank / alone, m.scalingRounds.count, options.steps, rounds))
        }
        Swift.print(
            String(
                format:
                    "  model FLOPs per image %.1f GFLOP (matrix products); achieved %.1f GFLOP/s; sgemm 1024^3 in this process (best of before and after) %.1f GFLOP/s; ratio %.0f%%",
                t.flops / max(images, 1) / 1e9, gflops, sgemm, 100 * gflops / max(sgemm, 1e-9)))
        Swift.print(
            String(
                format:
                    "  FMA peak in this process %.1f GFLOP/s (%d thread(s), %d-lane FMA loop): sgemm reaches %.0f%% of it, %@ %.0f%% (model FLOP utilisation)",
                peak, ComputeThreads.count, FMAPeak.lanes, 100 * sgemm / max(peak, 1e-9),
                training ? "the step" : "inference",
                100 * gflops / max(peak, 1e-9)))
        Swift.print(
            String(
                format: "  memory: peak RSS %.0f MB (rank 0), PSS %.0f MB (rank 0), total PSS %.0f MB over %d rank(s)",
                m.memory.rankPeakRSS, m.memory.rankPSS, m.memory.totalPSS, comm.size))
        if let opProfile {
            Swift.print("time per op (rank 0):\n" + opProfile.report(steps: t.steps.count, stepSeconds: total))
        }
        if options.json {
            var obj: [String: Any] = [
                "images_per_s": perRank, "images_per_s_total": m.imagesPerSecondTotal, "gflops_per_s": gflops,
                "sgemm_gflops_per_s": sgemm, "fma_peak_gflops_per_s": peak, "mfu": gflops / max(peak, 1e-9),
                "peak_rss_mb": m.memory.rankPeakRSS, "pss_mb": m.memory.rankPSS,
                "total_pss_mb": m.memory.totalPSS, "ranks": comm.size, "threads": ComputeThreads.count, "batch": batch,
                "size": options.size, "forward_s": t.forward, "backward_s": t.backward, "allreduce_wait_s": t.wait,
                "optimizer_s": t.optimizer, "flops_per_image": t.flops / max(images, 1),
                "tuning": training ? tuning : "inference",
                "precision": options.precision.rawValue, "step_s": t.steps,
                "rank_compute_s": m.ranks.map(\.compute), "rank_wait_s": m.ranks.map(\.wait),
            ]
            if !m.scalingRounds.isEmpty {
                obj["alone_images_per_s"] = alone
                obj["scaling_efficiency"] = perRank / alone
                obj["alone_round_images_per_s"] = m.scalingRounds.map(\.alone)
                obj["together_round_images_per_s"] = m.scalingRounds.map(\.together)
            }
            try printJSONLine(obj)
        }
    }
}

/// Seconds and matrix-product FLOPs of timed steps, summed.
struct StepTimes {
    var forward = 0.0, backward = 0.0, wait = 0.0, optimizer = 0.0, flops = 0.0
    /// Each step's wall time, in order.
    var steps: [Double] = []
    var total: Double { steps.reduce(0, +) }

    mutating func add(_ other: StepTimes) {
        forward += other.forward; backward += other.backward; wait += other.wait; optimizer += other.optimizer
        flops += other.flops
        steps += other.steps
    }
}
