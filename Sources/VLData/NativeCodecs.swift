import CJPEG
import CPNG

/// Versions of the native image libraries this build links.
public enum NativeCodecs {
    /// libpng's run-time version, e.g. "1.6.39".
    public static var pngVersion: String {
        let v = png_access_version_number()
        return "\(v / 10000).\(v / 100 % 100).\(v % 100)"
    }

    /// Whether a TurboJPEG decompressor can be created (the library loads and works).
    public static var turboJPEGAvailable: Bool {
        guard let handle = tjInitDecompress() else { return false }
        tjDestroy(handle)
        return true
    }
}
