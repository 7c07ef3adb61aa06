import Foundation

/// Rank 0's progress output: a single refreshing line on a terminal, plain lines otherwise.
public final class ProgressReporter {
    let isTerminal = isatty(STDERR_FILENO) != 0
    let interval: Double
    var lastDraw = Date.distantPast
    var lineOpen = false

    let output = PatientWriter(fd: STDERR_FILENO)

    public init(interval: Double = 0.5) { self.interval = interval }

    /// Progress is never worth a stalled run: a step's line is dropped when stderr is not being read
    /// (mpirun stops reading while it stops a job; a stalled terminal or ssh), messages wait briefly.
    func write(_ s: String, patience: Double = 0) { output.write(Data(s.utf8), patience: patience) }

    /// A message on its own line (clears an open progress line first).
    public func line(_ text: String) {
        if lineOpen { write("\n", patience: 2); lineOpen = false }
        write(text + "\n", patience: 2)
    }

    public func update(
        step: Int, total: Int, epoch: Int, loss: Double, lr: Float, imagesPerSecond: Double, elapsed: Double
    ) {
        let remaining = step > 0 ? elapsed / Double(step) * Double(total - step) : 0
        let eta =
            remaining >= 3600
            ? String(format: "%dh%02dm", Int(remaining) / 3600, Int(remaining) % 3600 / 60)
            : String(format: "%dm%02ds", Int(remaining) / 60, Int(remaining) % 60)
        let text = String(
            format: "step %d/%d  epoch %d  loss %.4f  lr %.3g  %.2f img/s  ETA %@", step, total, epoch, loss,
            Double(lr), imagesPerSecond, eta)
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

/// Writes to a descriptor without ever blocking longer than asked: through its own non-blocking
/// open file description when the descriptor is a pipe or socket (so the process's stderr itself
/// stays blocking for everyone else), waiting at most `patience` seconds for room, then dropping what
/// is left of the message and counting it.
final class PatientWriter {
    private let fd: Int32
    private let ownsDescriptor: Bool
    private(set) var droppedMessages = 0

    init(fd: Int32) {
        var st = stat()
        let isStream = fstat(fd, &st) == 0 && ((st.st_mode & S_IFMT) == S_IFIFO || (st.st_mode & S_IFMT) == S_IFSOCK)
        let reopened = isStream ? open("/proc/self/fd/\(fd)", O_WRONLY | O_NONBLOCK | O_CLOEXEC) : -1
        self.fd = reopened >= 0 ? reopened : fd
        ownsDescriptor = reopened >= 0
    }

    deinit { if ownsDescriptor { close(fd) } }

    func write(_ data: Data, patience: Double) {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(patience, 0) * 1e9)
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, base + done, raw.count - done)
                if n > 0 { done += n; continue }
                if n < 0 && errno == EINTR { continue }
                guard n < 0 && errno == EAGAIN else { break }
                let now = DispatchTime.now().uptimeNanoseconds
                guard now < deadline else { break }
                var waiter = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&waiter, 1, Int32(max(1, (deadline - now) / 1_000_000)))
            }
            if done < raw.count { droppedMessages += 1 }
        }
    }
}
