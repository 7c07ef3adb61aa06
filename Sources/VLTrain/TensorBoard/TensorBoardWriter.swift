import Foundation
import SwiftProtobuf

/// An event file that TensorBoard reads (`tensorboard --logdir runs/`): scalars and images by step.
///
/// Rank 0 writes one file per process start in `RUN/tensorboard/`, named as TensorBoard expects
/// (`events.out.tfevents.<seconds>.<host>.<pid>.vlseg`); a resumed run adds a file, and TensorBoard
/// merges the files of a directory by step. Records are flushed as written, so a crash loses at most
/// the one being written, which readers detect by its checksum. The messages are encoded by
/// swift-protobuf from `Protos/tensorboard_event.proto`.
public final class TensorBoardWriter {
    public let url: URL
    private let handle: FileHandle

    public static let directoryName = "tensorboard"

    public init(runDirectory: URL, now: Date = Date()) throws {
        let directory = runDirectory.appendingPathComponent(Self.directoryName)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        url = directory.appendingPathComponent(
            "events.out.tfevents.\(Int(now.timeIntervalSince1970)).\(host).\(getpid()).vlseg")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw MetricsLogError(path: url.path, reason: String(cString: strerror(errno)))
            }
            handle = try FileHandle(forWritingTo: url)
        } catch let error as MetricsLogError {
            throw error
        } catch {
            throw MetricsLogError(path: url.path, reason: MetricsLog.reason(error))
        }
        var first = TBEvent()
        first.wallTime = now.timeIntervalSince1970
        first.fileVersion = "brain.Event:2"
        try write(first)
    }

    /// Scalars at `step`, one summary value per tag.
    public func scalars(_ values: [(tag: String, value: Double)], step: Int, at time: Date = Date()) throws {
        guard !values.isEmpty else { return }
        var summary = TBSummary()
        summary.value = values.map { item in
            var v = TBSummary.Value()
            v.tag = item.tag
            v.simpleValue = Float(item.value)
            return v
        }
        try write(summary, step: step, time: time)
    }

    /// A PNG image at `step`.
    public func image(
        tag: String, png: Data, width: Int, height: Int, channels: Int = 3, step: Int, at time: Date = Date()
    ) throws {
        var image = TBSummary.Image()
        image.width = Int32(width)
        image.height = Int32(height)
        image.colorspace = Int32(channels)
        image.encodedImageString = png
        var value = TBSummary.Value()
        value.tag = tag
        value.image = image
        var summary = TBSummary()
        summary.value = [value]
        try write(summary, step: step, time: time)
    }

    private func write(_ summary: TBSummary, step: Int, time: Date) throws {
        var event = TBEvent()
        event.wallTime = time.timeIntervalSince1970
        event.step = Int64(step)
        event.summary = summary
        try write(event)
    }

    private func write(_ event: TBEvent) throws {
        do {
            let data: Data = try event.serializedData()
            try handle.write(contentsOf: TFRecord.frame(data))
        } catch {
            throw MetricsLogError(path: url.path, reason: MetricsLog.reason(error))
        }
    }

    deinit { try? handle.close() }
}
