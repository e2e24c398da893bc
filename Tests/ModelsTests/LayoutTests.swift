// The parameter layout (tensor names, shapes, offsets) and the seeded initialisation.

import XCTest
import Kernels
@testable import Models

final class LayoutTests: XCTestCase {
    func testTensorsTileTheBufferInOrder() {
        for spec in [makeSpec(.ae), makeSpec(.vae), makeSpec(.vae, encoder: []), makeSpec(.ae, encoder: [4])] {
            let model = Autoencoder(spec: spec)
            var offset = 0
            for t in model.tensors.sorted(by: { $0.offset < $1.offset }) {
                XCTAssertEqual(t.offset, offset, t.name)
                offset += t.count
            }
            XCTAssertEqual(offset, model.parameterCount)
            var expected = 0
            var width = spec.inputs
            let hidden = spec.encoder.map { ($0.kind as? Dense.Spec)?.width ?? -1 }
            for h in hidden { expected += width * h + h; width = h }
            expected += (spec.kind == .vae ? 2 : 1) * (width * spec.latent + spec.latent)
            width = spec.latent
            for h in hidden.reversed() { expected += width * h + h; width = h }
            expected += width * spec.inputs + spec.inputs
            XCTAssertEqual(model.parameterCount, expected)
            XCTAssertEqual(Autoencoder.parameterCount(of: spec), expected)
            // Layers point at their tensors.
            let byName = Dictionary(uniqueKeysWithValues: model.tensors.map { ($0.name, $0) })
            let layers = model.layers.map { $0 as! Dense }, code = layers[model.codeIndex]
            for (i, layer) in layers[..<model.codeIndex].enumerated() {
                XCTAssertEqual(byName["encoder.\(i).weight"]!.offset, layer.weight)
                XCTAssertEqual(byName["encoder.\(i).weight"]!.shape, [layer.outputs, layer.inputs])
                XCTAssertEqual(byName["encoder.\(i).bias"]!.offset, layer.bias)
            }
            if spec.kind == .vae {
                XCTAssertEqual(byName["encoder.mu.weight"]!.offset, code.weight)
                XCTAssertEqual(byName["encoder.logvar.weight"]!.offset, code.weight + spec.latent * code.inputs)
                XCTAssertEqual(byName["encoder.mu.bias"]!.offset, code.bias)
                XCTAssertEqual(byName["encoder.logvar.bias"]!.offset, code.bias + spec.latent)
                XCTAssertEqual(code.outputs, 2 * spec.latent)
            } else {
                XCTAssertEqual(byName["encoder.code.weight"]!.offset, code.weight)
            }
            XCTAssertEqual(layers.last!.outputs, spec.inputs)
            XCTAssertEqual(layers.last!.activation, .linear)
            XCTAssertEqual(code.activation, .linear)
        }
        XCTAssertEqual(Autoencoder(spec: makeSpec(.vae, inputs: 784, encoder: [512, 256], latent: 20, activation: .relu)).summary,
                       "vae 784-512-256-(20)-256-512-784, relu, bernoulli")
    }

    func testInitialisationIsSeededAndBounded() {
        let model = Autoencoder(spec: makeSpec(.vae, inputs: 30, encoder: [20], latent: 5))
        let a = FloatBuffer(count: model.parameterCount), b = FloatBuffer(count: model.parameterCount)
        let c = FloatBuffer(count: model.parameterCount)
        model.initialise(a, seed: 7); model.initialise(b, seed: 7); model.initialise(c, seed: 8)
        XCTAssertEqual(a.array, b.array)
        XCTAssertNotEqual(a.array, c.array)
        for layer in model.layers.map({ $0 as! Dense }) {
            let bound = 1 / Float(layer.inputs).squareRoot()
            var values: [Float] = []
            for i in 0..<(layer.inputs * layer.outputs) { values.append(a.pointer[layer.weight + i]) }
            for i in 0..<layer.outputs { values.append(a.pointer[layer.bias + i]) }
            XCTAssert(values.allSatisfy { abs($0) <= bound })
            // Spread over the whole range, roughly symmetric.
            XCTAssertGreaterThan(values.max()!, 0.8 * bound)
            XCTAssertLessThan(values.min()!, -0.8 * bound)
            XCTAssertEqual(Double(values.reduce(0, +)) / Double(values.count), 0, accuracy: Double(bound) * 0.2)
        }
        // Layers are keyed separately: two layers of the same shape get different values.
        let same = Autoencoder(spec: makeSpec(.ae, inputs: 6, encoder: [6], latent: 6))
        let p = FloatBuffer(count: same.parameterCount)
        same.initialise(p, seed: 1)
        let l0 = same.layers[0] as! Dense, l1 = same.layers[1] as! Dense
        XCTAssertNotEqual(Array(UnsafeBufferPointer(start: p.pointer + l0.weight, count: 36)),
                          Array(UnsafeBufferPointer(start: p.pointer + l1.weight, count: 36)))
    }

    /// The encoder's mirror written out in `decoder` is the same model: names, offsets, shapes, and
    /// the same outputs.
    func testTheMirrorWrittenOutIsTheSameModel() {
        var dense = makeSpec(.ae, encoder: [6, 4])
        var conv = makeSpec(.vae, inputs: 64, encoder: [.conv(channels: 3, kernel: 4, stride: 2, padding: 1), 5])
        conv.imageShape = [8, 8, 1]
        let mirrors: [(ModelSpec, [LayerSpec])] = [
            (dense, [4, 6, .dense(dense.inputs)]),
            (conv, [5, 48, .convTranspose(channels: 1, kernel: 4, stride: 2, padding: 1)]),
        ]
        for (spec, decoder) in mirrors {
            var explicit = spec
            explicit.decoder = decoder
            XCTAssertNil(Autoencoder.problem(with: explicit))
            let a = Autoencoder(spec: spec), b = Autoencoder(spec: explicit)
            XCTAssertEqual(a.tensors, b.tensors)
            XCTAssertEqual(a.summary, b.summary)
            XCTAssertEqual(a.layers.map { String(describing: type(of: $0)) }, b.layers.map { String(describing: type(of: $0)) })
        }
        dense.decoder = [7]
        XCTAssertNotEqual(Autoencoder(spec: dense).tensors.count, Autoencoder(spec: makeSpec(.ae, encoder: [6, 4])).tensors.count)
    }

    /// Each way an explicit decoder can fail to reach the data names the key and the entry.
    func testExplicitDecoderProblemsAreNamed() {
        var spec = makeSpec(.ae, inputs: 64, encoder: [5])
        spec.imageShape = [8, 8, 1]
        let cases: [([LayerSpec], String)] = [
            ([], "at least one layer"),
            ([10, 63], "the last entry gives the data: expected width 64, got 63"),
            ([.conv(channels: 1, kernel: 3, stride: 1, padding: 0)], "entry 1 is a convolution"),
            ([.convTranspose(channels: 1, kernel: 3, stride: 1, padding: 1)], "entry 1 is a transposed convolution; the decoder starts with a dense layer"),
            ([10, .convTranspose(channels: 1, kernel: 4, stride: 2, padding: 1)], "entry 1 (width 10) must be a multiple of the 4x4 grid that entry 2 takes"),
            ([16, .convTranspose(channels: 2, kernel: 4, stride: 2, padding: 1)], "entry 2 gives 2 channels, but the data has 1"),
            ([16, .convTranspose(channels: 1, kernel: 11, stride: 1, padding: 1)], "entry 2 (kernel 11, padding 1) does not fit"),
            ([32, .convTranspose(channels: 2, kernel: 4, stride: 2, padding: 1), 64], "entry 3 is a dense layer after a transposed convolution"),
        ]
        for (decoder, expected) in cases {
            var s = spec
            s.decoder = decoder
            let problem = Autoencoder.problem(with: s) ?? "no problem"
            XCTAssertTrue(problem.hasPrefix("key 'model.decoder': ") && problem.contains(expected), "\(decoder): \(problem)")
        }
        var flat = makeSpec(.ae, inputs: 64, encoder: [5])
        flat.decoder = [16, .convTranspose(channels: 1, kernel: 4, stride: 2, padding: 1)]
        XCTAssertTrue(Autoencoder.problem(with: flat)?.contains("no image shape") == true)
        flat.decoder = nil
        flat.encoder = [.convTranspose(channels: 1, kernel: 3, stride: 1, padding: 0)]
        XCTAssertTrue(Autoencoder.problem(with: flat)?.contains("key 'model.encoder': entry 1 is a transposed convolution") == true)
    }
}
