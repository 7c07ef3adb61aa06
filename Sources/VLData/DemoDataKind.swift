import Foundation

/// Which generator writes a demo dataset (`data.demo.kind`, `vlseg demo-data --kind`).
public enum DemoDataKind: String, CaseIterable, Sendable, Codable {
    /// Coloured blob lesions with prompts naming one (`DemoDataset`), the original demo data.
    case blobs
    /// Scenes of shapes with referring prompts (`SceneDataset`): the demo backbone's source domain.
    case scenes
    /// The shifted target domain (`ShiftedDomainDataset`): endoscopy-like polyps, ultrasound-like
    /// benign tumours, or both mixed per image.
    case endoscopy, ultrasound, medical

    /// What a write produced, whatever the generator.
    public struct Summary: Sendable {
        public var entries: [(split: String, count: Int)]
        public var images: Int
        public var meanForeground: Double
        public var seconds: Double
    }

    /// Writes `count` images of this kind (square, `size` pixels) under `root` in the medvlsm layout.
    /// `entriesPerImage` applies to scenes (one mask and prompt set per entry).
    @discardableResult
    public func write(
        count: Int, size: Int, seed: UInt64, entriesPerImage: Int = 2, to root: URL,
        progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Summary {
        switch self {
        case .blobs:
            let s = try DemoDataset.write(
                options: .init(count: count, width: size, height: size, seed: seed), to: root, progress: progress)
            return Summary(entries: s.splitCounts, images: count, meanForeground: s.meanForeground, seconds: s.seconds)
        case .scenes:
            let s = try SceneDataset.write(
                options: .init(
                    count: count, width: size, height: size, seed: seed,
                    entriesPerImage: entriesPerImage), to: root, progress: progress)
            return Summary(entries: s.splitCounts, images: count, meanForeground: s.meanForeground, seconds: s.seconds)
        case .endoscopy, .ultrasound, .medical:
            let modality: ShiftedDomainDataset.Modality =
                self == .endoscopy ? .endoscopy : (self == .ultrasound ? .ultrasound : .mixed)
            let s = try ShiftedDomainDataset.write(
                options: .init(count: count, width: size, height: size, seed: seed, modality: modality),
                to: root, progress: progress)
            return Summary(entries: s.splitCounts, images: count, meanForeground: s.meanForeground, seconds: s.seconds)
        }
    }
}
