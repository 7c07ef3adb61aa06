import Synchronization

/// Says once per process that a prompt is longer than the text tower takes.
///
/// Such a prompt is cut as transformers cuts it (its first `maxLength - 2` tokens between the
/// start and end tokens), so results match the reference; but a user whose prompts lose their ends
/// should hear about it once, with the prompt, rather than never or once per batch.
public enum TruncationNotice {
    private static let said = Atomic<Bool>(false)
    /// Prompts already measured: a dataset repeats a few prompts every epoch, so each is encoded once
    /// here, not once per batch beside the loader's own encoding.
    private static let measured = Mutex<Set<String>>([])

    /// Checks `texts` until a notice has been given; the first text over `maxLength` tokens (with its
    /// two special tokens) is reported through `log`.
    public static func check(_ texts: [String], tokenizer: CLIPTokenizer, maxLength: Int, log: (String) -> Void) {
        guard !said.load(ordering: .relaxed) else { return }
        let new = measured.withLock { seen in texts.filter { seen.insert($0).inserted } }
        for text in new {
            let tokens = tokenizer.encode(text).count + 2
            guard tokens > maxLength else { continue }
            guard said.exchange(true, ordering: .relaxed) == false else { return }
            let shown = text.count > 120 ? String(text.prefix(120)) + "…" : text
            log(
                "warning: the prompt \"\(shown)\" has \(tokens) tokens; the text tower takes \(maxLength), so it is cut to its first "
                    + "\(maxLength - 2) (as transformers does); later prompts are cut the same way without a word")
            return
        }
    }
}
