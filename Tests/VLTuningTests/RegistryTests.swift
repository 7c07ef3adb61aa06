import XCTest
@testable import VLModels
@testable import VLTuning

final class RegistryTests: XCTestCase {
    func testBaselinesAndUnknownNames() throws {
        let model = CLIPSegInitializer.randomModel(config: CLIPSegPreset.tiny.config, seed: 0)
        XCTAssertEqual(try TuningRegistry.make("decoder").prepare(model, seed: 0), model.decoderParameterNames)
        XCTAssertEqual(try TuningRegistry.make("full").prepare(model, seed: 0).count, model.parameters.names.count)
        XCTAssertEqual(try TuningRegistry.make("zero_shot").prepare(model, seed: 0), [])
        XCTAssertThrowsError(try TuningRegistry.make("nope")) { XCTAssertTrue("\($0)".contains("available")) }
    }

    func testBasePresetDecoderCount() throws {
        let config = CLIPSegPreset.base.config
        let count = CLIPSegModel.expectedParameters(config).filter { $0.name.hasPrefix("decoder.") }.reduce(0) { $0 + $1.shape.reduce(1, *) }
        XCTAssertEqual(count, 1_127_009)
    }
}
