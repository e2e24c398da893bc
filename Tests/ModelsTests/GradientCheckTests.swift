// Finite-difference checks of `backward`: for every parameter θ_i of small, well-conditioned models,
// the central difference (L(θ + h e_i) − L(θ − h e_i)) / 2h of L = scale · Σ_rows loss(row) must
// match the gradient `backward` writes. The noise (VAE latent draws, denoising corruption) is keyed by
// (seed, sample number), so the ± evaluations see the same draws.
//
// Tolerances: with Float losses of size ~10 and h = 1e-2, the rounding noise of a difference is about
// 1e-3 absolute; the per-coordinate error is therefore measured against |analytic| + 2% of the gradient's
// rms. A correct gradient gives median errors ~1e-4 and maxima ~1e-2 (over seeds 1-8); a dropped or
// sign-flipped term gives errors of order 1 on the coordinates it touches. ReLU and leaky ReLU use
// h = 2e-2 (piecewise linear: no truncation error, half the rounding noise) and skip the coordinates
// whose perturbation moves a pre-activation across 0.

import XCTest
import Kernels
@testable import Models

final class GradientCheckTests: XCTestCase {
    /// Runs the check and asserts median < 1e-2, max < 5e-2, no sign disagreements, and that at least
    /// `minimumChecked` of the coordinates (the rest sat near a kink) were compared.
    func assertGradient(_ spec: ModelSpec, rows: Int = 4, chunk: Int = 2, scale: Float = 1, h: Float = 1e-2,
                        minimumChecked: Double = 0.95, seed: UInt64 = 1, noise: NoiseSource? = nil,
                        file: StaticString = #filePath, line: UInt = #line) {
        let f = Fixture(spec, rows: rows, seed: seed, noise: noise)
        let r = checkGradient(f, chunk: chunk, scale: scale, h: h)
        let label = f.model.summary + " noise \(spec.noise) l1 \(spec.l1) kl \(spec.klWeight)"
        let worst = "worst \(tensorName(f.model, r.worst.index)): analytic \(r.worst.analytic) numeric \(r.worst.numeric)"
        print(String(format: "gradient check %@: checked %d skipped %d median %.2e max %.2e", label, r.checked,
                     r.skipped, r.median, r.maxError), worst)
        XCTAssertGreaterThanOrEqual(Double(r.checked), minimumChecked * Double(f.model.parameterCount),
                                    "too many coordinates near a kink: \(label)", file: file, line: line)
        XCTAssertLessThan(r.median, 1e-2, "\(label): \(worst)", file: file, line: line)
        XCTAssertLessThan(r.maxError, 5e-2, "\(label): \(worst)", file: file, line: line)
        XCTAssertEqual(r.signMismatches, 0, "\(label): \(worst)", file: file, line: line)
        // Every tensor, the first layer's weights included (they see the gradient only through every
        // layer's input-gradient product), must have a nonzero gradient.
        for t in f.model.tensors {
            let norm = f.gradients[t].reduce(Float(0)) { $0 + $1 * $1 }
            XCTAssertGreaterThan(norm, 0, "\(label): \(t.name) has a zero gradient", file: file, line: line)
        }
    }

    // MARK: stacked autoencoder, every activation

    func testTanhBernoulli() { assertGradient(makeSpec(activation: .tanh, output: .bernoulli)) }
    func testSigmoidBernoulli() { assertGradient(makeSpec(activation: .sigmoid, output: .bernoulli)) }
    func testLinearBernoulli() { assertGradient(makeSpec(activation: .linear, output: .bernoulli)) }
    func testTanhGaussian() { assertGradient(makeSpec(activation: .tanh, output: .gaussian)) }
    func testSigmoidGaussian() { assertGradient(makeSpec(activation: .sigmoid, output: .gaussian)) }
    func testLinearGaussian() { assertGradient(makeSpec(activation: .linear, output: .gaussian)) }
    func testReluBernoulli() {
        assertGradient(makeSpec(activation: .relu, output: .bernoulli), h: 2e-2, minimumChecked: 0.7)
    }
    func testReluGaussian() {
        assertGradient(makeSpec(activation: .relu, output: .gaussian), h: 2e-2, minimumChecked: 0.7)
    }
    func testLeakyReluBernoulli() {
        assertGradient(makeSpec(activation: .leakyRelu, output: .bernoulli), h: 2e-2, minimumChecked: 0.7)
    }
    func testLeakyReluGaussian() {
        assertGradient(makeSpec(activation: .leakyRelu, output: .gaussian), h: 2e-2, minimumChecked: 0.7)
    }

    /// The loss scale multiplies every gradient (1/3: not a power of two), and a micro-batch of the whole batch.
    func testScaleAndWholeBatchChunk() {
        assertGradient(makeSpec(activation: .tanh, output: .bernoulli), chunk: 4, scale: 1.0 / 3)
        assertGradient(makeSpec(.vae, activation: .sigmoid, output: .gaussian), chunk: 1, scale: 0.7)
    }

    // MARK: VAE

    func testVAEBernoulliKLWeight1() { assertGradient(makeSpec(.vae, activation: .tanh, output: .bernoulli, klWeight: 1)) }
    func testVAEBernoulliKLWeightHalf() { assertGradient(makeSpec(.vae, activation: .tanh, output: .bernoulli, klWeight: 0.5)) }
    func testVAEGaussianKLWeightHalf() { assertGradient(makeSpec(.vae, activation: .sigmoid, output: .gaussian, klWeight: 0.5)) }
    func testVAEGaussianKLWeight1() { assertGradient(makeSpec(.vae, activation: .linear, output: .gaussian, klWeight: 1)) }
    func testVAERelu() {
        assertGradient(makeSpec(.vae, activation: .relu, output: .bernoulli), h: 2e-2, minimumChecked: 0.7)
    }
    func testVAEWithoutLatentSampling() {
        // Encoding mode (z = mu): the log-variance head only feels the KL term.
        let noise = NoiseSource(seed: 9, firstSample: 0, sampleLatent: false, corruptInputs: false)
        assertGradient(makeSpec(.vae, activation: .tanh, output: .bernoulli), noise: noise)
    }
    func testVAELargeLatentNoiseStream() {
        // Another stream and first sample: the draws differ, the gradient must still match.
        let noise = NoiseSource(seed: 31, firstSample: 1000, latentStream: .sampling, corruptInputs: false)
        assertGradient(makeSpec(.vae, activation: .tanh, output: .gaussian, klWeight: 0.5), noise: noise)
    }

    // MARK: denoising: the encoder sees the corrupted input, the loss compares with the clean one

    func testDenoisingGaussian() {
        assertGradient(makeSpec(activation: .tanh, output: .bernoulli, noise: .gaussian, noiseLevel: 0.5))
    }
    func testDenoisingMasking() {
        assertGradient(makeSpec(activation: .sigmoid, output: .gaussian, noise: .masking, noiseLevel: 0.4))
    }
    func testDenoisingSaltPepper() {
        assertGradient(makeSpec(activation: .tanh, output: .bernoulli, noise: .saltPepper, noiseLevel: 0.4))
    }
    func testDenoisingVAE() {
        assertGradient(makeSpec(.vae, activation: .tanh, output: .bernoulli, noise: .masking, noiseLevel: 0.3))
    }
    func testDenoisingWithoutHiddenLayers() {
        // The code layer reads the (corrupted) input directly.
        assertGradient(makeSpec(encoder: [], activation: .tanh, output: .gaussian, noise: .saltPepper, noiseLevel: 0.4))
    }

    // MARK: sparsity penalty l1 · Σ|latent| (coordinates that move a latent value across 0 are skipped)

    func testSparsityAE() {
        assertGradient(makeSpec(activation: .tanh, output: .bernoulli, l1: 0.3), minimumChecked: 0.8)
    }
    func testSparsityAEGaussianRelu() {
        assertGradient(makeSpec(activation: .relu, output: .gaussian, l1: 0.2), h: 2e-2, minimumChecked: 0.7)
    }
    func testSparsityKLTargetAE() {
        // Sigmoid code units pulled towards a mean activation of 0.1.
        var spec = makeSpec(activation: .tanh, output: .bernoulli)
        spec.sparsityTarget = 0.1
        spec.sparsityKLWeight = 0.7
        assertGradient(spec, minimumChecked: 0.9)
    }
    func testSparsityVAE() {
        assertGradient(makeSpec(.vae, activation: .tanh, output: .bernoulli, l1: 0.3, klWeight: 0.5), minimumChecked: 0.8)
    }

    // MARK: no hidden layers: code layer straight from the input, output layer straight from the latent

    func testNoHiddenLayersAE() {
        assertGradient(makeSpec(encoder: [], activation: .relu, output: .bernoulli))
        assertGradient(makeSpec(encoder: [], activation: .linear, output: .gaussian, l1: 0.1), minimumChecked: 0.8)
    }
    func testNoHiddenLayersVAE() {
        assertGradient(makeSpec(.vae, encoder: [], output: .bernoulli))
        assertGradient(makeSpec(.vae, encoder: [], output: .gaussian, klWeight: 0.5))
    }
    func testOneHiddenLayerWiderLatent() {
        assertGradient(makeSpec(.vae, inputs: 5, encoder: [8], latent: 4, activation: .tanh, output: .gaussian))
        assertGradient(makeSpec(inputs: 9, encoder: [4, 3, 2], latent: 2, activation: .sigmoid, output: .bernoulli))
    }

    // MARK: properties of the gradient buffer

    /// backward writes the gradient, it never accumulates into it: garbage in the buffer, or calling
    /// it twice, changes nothing.
    func testBackwardOverwritesGradients() {
        let f = Fixture(makeSpec(.vae, activation: .tanh, output: .bernoulli, noise: .gaussian, noiseLevel: 0.2, l1: 0.1),
                        rows: 4)
        let first = f.analyticGradient(chunk: 2, scale: 1)
        for i in 0..<f.gradients.count { f.gradients.pointer[i] = Float(i % 7) - 3 }
        f.model.backward(f.parameters, f.gradients, f.ws, rows: 4, chunk: 2, scale: 1, pool: f.pool)
        XCTAssertEqual(f.gradients.array, first)
        f.model.backward(f.parameters, f.gradients, f.ws, rows: 4, chunk: 2, scale: 1, pool: f.pool)
        XCTAssertEqual(f.gradients.array, first)
    }

    /// A power-of-two scale scales every gradient exactly.
    func testPowerOfTwoScaleIsExact() {
        for spec in [makeSpec(.vae, activation: .tanh, output: .bernoulli, l1: 0.1, klWeight: 0.5),
                     makeSpec(activation: .relu, output: .gaussian, noise: .masking, noiseLevel: 0.3, l1: 0.2)] {
            let f = Fixture(spec, rows: 4)
            let one = f.analyticGradient(chunk: 2, scale: 1)
            let quarter = f.analyticGradient(chunk: 2, scale: 0.25)
            XCTAssertEqual(quarter, one.map { $0 * 0.25 })
            XCTAssert(one.contains { $0 != 0 })
        }
    }

    /// The loss the objective uses is reconstruction + kl_weight · KL + sparsity, and forward leaves the
    /// clean input untouched when denoising.
    func testLossIsSumOfTerms() {
        let spec = makeSpec(.vae, activation: .tanh, output: .bernoulli, noise: .saltPepper, noiseLevel: 0.5,
                            l1: 0.25, klWeight: 0.5)
        let f = Fixture(spec, rows: 4)
        f.forward()
        XCTAssertEqual(f.ws.input.array.prefix(4 * 7).map { $0 }, f.inputs)
        for r in 0..<4 {
            let expected = f.ws.reconstruction.pointer[r] + 0.5 * f.ws.kl.pointer[r] + f.ws.sparsity.pointer[r]
            XCTAssertEqual(f.model.loss(f.ws, row: r), expected)
            XCTAssertGreaterThan(f.ws.kl.pointer[r], 0)
            XCTAssertGreaterThan(f.ws.sparsity.pointer[r], 0)
            var l1: Float = 0
            for j in 0..<3 { l1 += abs(f.ws.latent[r * 3 + j]) }
            XCTAssertEqual(f.ws.sparsity.pointer[r], 0.25 * l1, accuracy: 1e-6)
        }
        // The encoder saw a corrupted copy: some inputs differ, each corrupted value is 0 or 1.
        let corrupted = f.ws.corrupted.array
        var changed = 0
        for i in 0..<(4 * 7) where corrupted[i] != f.inputs[i] {
            changed += 1
            XCTAssert(corrupted[i] == 0 || corrupted[i] == 1)
        }
        XCTAssertGreaterThan(changed, 3)
        XCTAssertLessThan(changed, 25)
    }

    // MARK: convolutions (Conv2D in the encoder, its ConvTranspose2D mirror in the decoder)

    /// An image model of `shape` [H, W, C] with the given encoder.
    func imageSpec(_ kind: ModelKind, shape: [Int], encoder: [LayerSpec], activation: Activation = .tanh,
                   output: OutputDistribution = .gaussian, noise: NoiseKind = .none, noiseLevel: Float = 0,
                   l1: Float = 0) -> ModelSpec {
        var s = makeSpec(kind, inputs: shape.reduce(1, *), encoder: encoder, latent: 3, activation: activation,
                         output: output, noise: noise, noiseLevel: noiseLevel, l1: l1)
        s.imageShape = shape
        return s
    }

    func testConvolutionsStride1Padding1SeveralChannels() {
        assertGradient(imageSpec(.ae, shape: [5, 4, 2], encoder: [.conv(channels: 3, kernel: 3, stride: 1, padding: 1)]))
    }
    func testConvolutionsStride2Padding0OddSizes() {
        // 8x6 -> 3x2: the transposed convolution leaves a row and a column that only the bias reaches.
        assertGradient(imageSpec(.ae, shape: [8, 6, 1], encoder: [.conv(channels: 2, kernel: 3, stride: 2, padding: 0)]))
    }
    func testTwoConvolutionsThenDenseStride2Padding1() {
        assertGradient(imageSpec(.ae, shape: [7, 6, 2], encoder: [.conv(channels: 3, kernel: 3, stride: 2, padding: 1),
                                                                   .conv(channels: 2, kernel: 2, stride: 1, padding: 0), 5],
                                 output: .bernoulli))
    }
    func testConvolutionalVAEWithDenoisingAndL1() {
        assertGradient(imageSpec(.vae, shape: [6, 6, 1], encoder: [.conv(channels: 2, kernel: 4, stride: 2, padding: 1), 4],
                                 output: .bernoulli, noise: .gaussian, noiseLevel: 0.2, l1: 0.05))
    }
    func testConvolutionsWithRelu() {
        assertGradient(imageSpec(.ae, shape: [6, 5, 3], encoder: [.conv(channels: 4, kernel: 2, stride: 2, padding: 1)],
                                 activation: .relu), h: 2e-2, minimumChecked: 0.7)
    }

    // Explicit decoders (model.decoder): not the encoder's mirror.
    func testDenseEncoderTransposedConvolutionDecoder() {
        var spec = imageSpec(.vae, shape: [6, 5, 2], encoder: [7], output: .bernoulli)
        // latent 3 -> 18 = 3x3x2 -> convT to 6x5x2 (stride 2, padding 1: the last row gets only the bias).
        spec.decoder = [.dense(18), .convTranspose(channels: 2, kernel: 3, stride: 2, padding: 1)]
        assertGradient(spec, h: 2e-2)
    }
    func testConvolutionEncoderDenseDecoderAndTwoTransposedConvolutions() {
        var spec = imageSpec(.ae, shape: [7, 6, 1], encoder: [.conv(channels: 3, kernel: 3, stride: 2, padding: 1)])
        spec.decoder = [5, 42]   // dense from the latent to the 7x6 pixels
        assertGradient(spec)
        spec.decoder = [.dense(12), .convTranspose(channels: 3, kernel: 2, stride: 1, padding: 0),
                        .convTranspose(channels: 1, kernel: 3, stride: 2, padding: 1)]
        assertGradient(spec)
    }
}
