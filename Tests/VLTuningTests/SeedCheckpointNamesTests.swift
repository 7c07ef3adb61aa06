import VLModels
import VLTensor
import VLTuning
import XCTest

/// The mapping of the seeds' Lightning state-dict names (after `net.`) onto VLSeg's names.
final class SeedCheckpointNamesTests: XCTestCase {
    private func floats(_ values: [Float]) -> TorchTensorData {
        TorchTensorData(
            dtype: .float32, shape: [values.count], values: .float32(Tensor(shape: [values.count], values: values)))
    }

    func testAdaptersMapToThemselvesAndWrappedBaseWeightsLoseTheirWrapper() {
        let embedding = floats([1, 2, 3, 4])
        let tensors: [(name: String, tensor: TorchTensorData)] = [
            ("clipseg.clip.text_model.embeddings.token_embedding.weight", embedding),
            ("clipseg.decoder.reduce.weight", floats([5, 6])),
            ("clip.text_model.embeddings.token_embedding.weight", embedding),
            ("v_attn_adapters.0.fc1.weight", floats([0.1, 0.2])),
            ("v_attn_adapters.0.fc1.bias", floats([0.1])),
            ("cond_adapter.fc2.bias", floats([5, 6])),
            ("context_learner.context_vectors", floats([0.1, 0.2])),
        ]
        let c = SeedCheckpointNames.convert(tensors)
        XCTAssertEqual(
            c.trainable.map(\.name),
            ["v_attn_adapters.0.fc1.weight", "v_attn_adapters.0.fc1.bias", "cond_adapter.fc2.bias"])
        XCTAssertEqual(
            c.base.map(\.name), ["clip.text_model.embeddings.token_embedding.weight", "decoder.reduce.weight"])
        XCTAssertEqual(c.aliases, ["clip.text_model.embeddings.token_embedding.weight"])
        XCTAssertEqual(c.unmapped, ["context_learner.context_vectors"])
        XCTAssertEqual(c.methods, ["VLSM-Adapter"])
        XCTAssertEqual(c.trainable[0].tensor.floats?.scalars, [0.1, 0.2])
    }

    func testAnAliasWithDifferentValuesIsReportedNotChosen() {
        let c = SeedCheckpointNames.convert([
            ("clipseg.clip.text_model.embeddings.token_embedding.weight", floats([1, 2])),
            ("clip.text_model.embeddings.token_embedding.weight", floats([1, 3])),
        ])
        XCTAssertEqual(c.base.map(\.name), ["clip.text_model.embeddings.token_embedding.weight"])
        XCTAssertEqual(c.base[0].tensor.floats?.scalars, [1, 2])
        XCTAssertEqual(c.unmapped, ["clip.text_model.embeddings.token_embedding.weight"])
        XCTAssertEqual(c.aliases, [])
    }

    func testTheTable() {
        XCTAssertEqual(
            SeedCheckpointNames.map("l_out_adapters.8.fc2.weight"),
            .trainable("l_out_adapters.8.fc2.weight", method: "VLSM-Adapter"))
        XCTAssertEqual(
            SeedCheckpointNames.map("vision_extract_adapters.2.fc1.bias"),
            .trainable("vision_extract_adapters.2.fc1.bias", method: "VLSM-Adapter"))
        XCTAssertEqual(SeedCheckpointNames.map("model.decoder.film_mul.weight"), .base("decoder.film_mul.weight"))
        XCTAssertEqual(SeedCheckpointNames.map("v_attn_adapters.x.fc1.weight"), .unmapped)
        XCTAssertEqual(SeedCheckpointNames.map("v_attn_adapters.01.fc1.weight"), .unmapped)
        XCTAssertEqual(SeedCheckpointNames.map("cond_adapter.fc3.weight"), .unmapped)
    }
}
