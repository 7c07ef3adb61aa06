import Foundation

/// Rank 0's progress output: a single refreshing line on a terminal, plain lines otherwise.
public final class ProgressReporter {
    let isTerminal = isatty(STDERR_FILENO) != 0
    let interval: Double
    var lastDraw = Date.distantPast
    var lineOpen = false

    public init(interval: Double = 0.5) { self.interval = interval }

    func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    /// A message on its own line (clears an open progress line first).
    public func line(_ text: String) {
        if lineOpen { write("\n"); lineOpen = false }
        write(text + "\n")
    }

    public func update(step: Int, total: Int, epoch: Int, loss: Double, lr: Float, imagesPerSecond: Double, elapsed: Double) {
        let remaining = step > 0 ? elapsed / Double(step) * Double(total - step) : 0
        let eta = remaining >= 3600 ? String(format: "%dh%02dm", Int(remaining) / 3600, Int(remaining) % 3600 / 60)
            : String(format: "%dm%02ds", Int(remaining) / 60, Int(remaining) % 60)
        let text = String(format: "step %d/%d  epoch %d  loss %.4f  lr %.3g  %.2f img/s  ETA %@", step, total, epoch, loss, Double(lr), imagesPerSecond, eta)
        if isTerminal {
            guard Date().timeIntervalSince(lastDraw) >= interval || step == total else { return }
            let width = 30
            let filled = total > 0 ? width * step / total : 0
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            write("\r[\(bar)] \(text)\u{1B}[K")
            lineOpen = true
            lastDraw = Date()
        } else {
            write(text + "\n")
        }
    }

    public func finish() {
        if lineOpen { write("\n"); lineOpen = false }
    }
}
