import XCTest

@testable import VLTensor

final class BLASSelectionTests: XCTestCase {
    let xeon = CPUFeatures.parse(
        cpuinfo: """
            processor\t: 0
            model name\t: Intel(R) Xeon(R) Platinum 8375C
            flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni
            """)
    let zen4 = CPUFeatures(
        modelName: "AMD EPYC",
        flags: [
            "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512cd",
            "avx512bw", "avx512vl", "avx512_bf16",
        ])
    let haswell = CPUFeatures(modelName: "old", flags: ["avx", "avx2", "fma"])
    let ancient = CPUFeatures(modelName: "older", flags: ["sse2"])

    func testParsesCpuinfo() {
        XCTAssertEqual(xeon.modelName, "Intel(R) Xeon(R) Platinum 8375C")
        XCTAssertTrue(xeon.hasAVX512)
        XCTAssertTrue(xeon.vectorSummary.contains("avx512f"))
    }

    func testPrescottOnAVX512IsCorrected() {
        XCTAssertEqual(BLASKernelSelection.correction(detectedCore: "Prescott", cpu: xeon), "SkylakeX")
        XCTAssertEqual(BLASKernelSelection.correction(detectedCore: "Prescott", cpu: zen4), "Cooperlake")
        XCTAssertEqual(BLASKernelSelection.correction(detectedCore: "Sandybridge", cpu: haswell), "Haswell")
    }

    func testMatchingCoreIsLeftAlone() {
        XCTAssertNil(BLASKernelSelection.correction(detectedCore: "SkylakeX", cpu: xeon))
        XCTAssertNil(BLASKernelSelection.correction(detectedCore: "Cooperlake", cpu: zen4))
        XCTAssertNil(BLASKernelSelection.correction(detectedCore: "Zen", cpu: haswell))
        XCTAssertNil(BLASKernelSelection.correction(detectedCore: "Prescott", cpu: ancient))
    }

    /// What vlseg sets before OpenBLAS loads: a better core only when needed, the thread timeout
    /// unless given; the user's own values are kept.
    func testEnvironmentChanges() {
        func names(_ env: [String: String], _ cpu: CPUFeatures, _ core: String) -> [String] {
            BLASKernelSelection.environmentChanges(env, cpu: cpu, detectedCore: core).map { "\($0.0)=\($0.1)" }
        }
        XCTAssertEqual(names([:], xeon, "Prescott"), ["OPENBLAS_CORETYPE=SkylakeX", "OPENBLAS_THREAD_TIMEOUT=4"])
        XCTAssertEqual(names([:], xeon, "SkylakeX"), ["OPENBLAS_THREAD_TIMEOUT=4"])
        XCTAssertEqual(names(["OPENBLAS_CORETYPE": "Haswell"], xeon, "Prescott"), ["OPENBLAS_THREAD_TIMEOUT=4"])
        XCTAssertEqual(names(["OPENBLAS_THREAD_TIMEOUT": "20"], xeon, "SkylakeX"), [])
    }

    func testThisProcessRunsAKnownCore() {
        XCTAssertFalse(BLAS.coreName.isEmpty)
        XCTAssertTrue(BLAS.configuration.contains("OpenBLAS"), BLAS.configuration)
    }
}
