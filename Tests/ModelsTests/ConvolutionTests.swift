// Conv2D and ConvTranspose2D against direct loops over pixels (odd sizes, strides 1 to 3, padding
// 0 to 2, several channels), and a convolutional model's bits against the batch and thread count.
import XCTest
import Kernels
@testable import Models

final class ConvolutionTests: XCTestCase {
    let geometries: [(h: Int, w: Int, cin: Int, cout: Int, k: Int, s: Int, p: Int)] = [
        (5, 7, 1, 3, 3, 1, 0), (6, 5, 2, 3, 3, 1, 1), (7, 7, 3, 2, 3, 2, 1), (9, 6, 2, 5, 4, 2, 1),
        (8, 8, 1, 4, 2, 2, 0), (10, 7, 3, 3, 5, 3, 2), (4, 4, 17, 33, 3, 1, 1),
    ]

    func random(_ n: Int, seed: UInt64) -> [Float] {
        let key = RandomKey(seed: seed, stream: .evaluation, 99)
        return (0..<n).map { key.normal(UInt64($0)) }
    }

    func run(_ layer: any Layer, input: [Float], parameters: [Float], rows: Int, threads: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: rows * layer.output.count)
        var own = [Float](repeating: .nan, count: max(layer.scratchCount(rows: rows), 1))
        var sums = [Float](repeating: 0, count: 1)
        let pool = ComputePool(threads: threads)
        input.withUnsafeBufferPointer { x in parameters.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in own.withUnsafeMutableBufferPointer { s in sums.withUnsafeMutableBufferPointer { c in
                layer.forward(out: o.baseAddress!, inp: x.baseAddress!, rows: rows, parameters: p.baseAddress!,
                              scratch: LayerScratch(columnSums: c.baseAddress!, own: s.baseAddress!), pool: pool)
            } } }
        } }
        return out
    }

    /// The parameter buffer of `layer` (at offset 0) whose tensors hold `stored`, the tensors back to
    /// back in checkpoint (PyTorch) order: what the direct loops index.
    func buffer(_ layer: any Layer, stored: [Float]) -> [Float] {
        let buffer = FloatBuffer(count: layer.parameters.count)
        var at = 0
        for t in layer.tensors {
            t.setStoredValues(Array(stored[at..<(at + t.count)]), in: buffer)
            XCTAssertEqual(t.withStoredValues(in: buffer) { Array($0) }, Array(stored[at..<(at + t.count)]), t.name)
            at += t.count
        }
        XCTAssertEqual(at, stored.count)
        return buffer.array
    }

    func testConvolutionMatchesDirectLoops() {
        for (h, w, cin, cout, k, s, p) in geometries {
            let image = FeatureShape(height: h, width: w, channels: cin), rows = 3
            let layer = Conv2D("c", input: image, channels: cout, kernel: k, stride: s, padding: p, activation: .linear, offset: 0)
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
            XCTAssertEqual(layer.output, FeatureShape(height: oh, width: ow, channels: cout))
            XCTAssertEqual(layer.tensors.map(\.shape), [[cout, cin, k, k], [cout]])
            let x = random(rows * image.count, seed: 1), params = random(layer.parameters.count, seed: 2)
            let got = run(layer, input: x, parameters: buffer(layer, stored: params), rows: rows, threads: 2)
            var worst: Float = 0
            for r in 0..<rows { for oy in 0..<oh { for ox in 0..<ow { for co in 0..<cout {
                var sum = Double(params[layer.bias + co])
                for ci in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                    let iy = oy * s - p + ky, ix = ox * s - p + kx
                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                    sum += Double(params[((co * cin + ci) * k + ky) * k + kx]) * Double(x[r * image.count + (iy * w + ix) * cin + ci])
                } } }
                let value = got[r * layer.output.count + (oy * ow + ox) * cout + co]
                worst = max(worst, abs(value - Float(sum)) / max(1, abs(Float(sum))))
            } } } }
            XCTAssertLessThan(worst, 1e-5, "conv \(h)x\(w)x\(cin) -> \(cout) k\(k) s\(s) p\(p)")
        }
    }

    func testTransposedConvolutionMatchesDirectLoops() {
        for (h, w, cout, cin, k, s, p) in geometries {
            // The transposed convolution from the convolution's grid back to the h x w image.
            let (gh, gw) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
            let input = FeatureShape(height: gh, width: gw, channels: cin), output = FeatureShape(height: h, width: w, channels: cout)
            let layer = ConvTranspose2D("t", input: input, output: output, kernel: k, stride: s, padding: p,
                                        activation: .linear, offset: 0)
            XCTAssertEqual(layer.tensors.map(\.shape), [[cin, cout, k, k], [cout]])
            let rows = 2
            let x = random(rows * input.count, seed: 3), params = random(layer.parameters.count, seed: 4)
            let got = run(layer, input: x, parameters: buffer(layer, stored: params), rows: rows, threads: 2)
            var expected = [Double](repeating: 0, count: rows * output.count)
            for r in 0..<rows {
                for i in 0..<(h * w) { for co in 0..<cout { expected[r * output.count + i * cout + co] = Double(params[layer.bias + co]) } }
                for iy in 0..<gh { for ix in 0..<gw { for ci in 0..<cin { for co in 0..<cout { for ky in 0..<k { for kx in 0..<k {
                    let oy = iy * s - p + ky, ox = ix * s - p + kx
                    guard oy >= 0, oy < h, ox >= 0, ox < w else { continue }
                    expected[r * output.count + (oy * w + ox) * cout + co] +=
                        Double(params[((ci * cout + co) * k + ky) * k + kx]) * Double(x[r * input.count + (iy * gw + ix) * cin + ci])
                } } } } } }
            }
            let worst = zip(got, expected).map { abs(Double($0) - $1) / max(1, abs($1)) }.max()!
            XCTAssertLessThan(worst, 1e-5, "convT \(gh)x\(gw)x\(cin) -> \(h)x\(w)x\(cout) k\(k) s\(s) p\(p)")
        }
    }

    func convSpec(_ kind: ModelKind) -> ModelSpec {
        var s = makeSpec(kind, inputs: 9 * 8 * 2, encoder: [.conv(channels: 5, kernel: 3, stride: 2, padding: 1),
                                                          .conv(channels: 3, kernel: 3, stride: 1, padding: 1), 6],
                         latent: 3, activation: .relu, output: .bernoulli, noise: .masking, noiseLevel: 0.2, l1: 0.01)
        s.imageShape = [9, 8, 2]
        return s
    }

    /// The gradient of a conv model's batch is the pairwise tree of its micro-batches' gradients, and
    /// neither it nor the outputs depend on the thread count (what rank-count invariance rests on).
    func testConvolutionalModelBitsDoNotDependOnBatchingOrThreads() {
        for kind in [ModelKind.ae, .vae] {
            let spec = convSpec(kind)
            let inputs = makeInputs(rows: 8, inputs: spec.inputs, output: spec.output, seed: 5)
            func gradient(_ start: Int, _ count: Int, chunk: Int, threads: Int) -> (g: [UInt32], out: [UInt32]) {
                let f = Fixture(spec, rows: count, seed: 3, threads: threads,
                                noise: NoiseSource(seed: 9, firstSample: UInt64(start), corruptInputs: true),
                                inputs: Array(inputs[(start * spec.inputs)..<((start + count) * spec.inputs)]))
                let g = f.analyticGradient(chunk: chunk, scale: 0.5)
                return (g.map(\.bitPattern), Array(UnsafeBufferPointer(start: f.ws.outputs, count: count * spec.inputs)).map(\.bitPattern))
            }
            let full = gradient(0, 8, chunk: 4, threads: 1)
            let a = gradient(0, 4, chunk: 4, threads: 1), b = gradient(4, 4, chunk: 4, threads: 1)
            let tree = zip(a.g, b.g).map { (Float(bitPattern: $0) + Float(bitPattern: $1)).bitPattern }
            XCTAssertEqual(full.g, tree, "\(kind): 8 rows = 4 + 4")
            XCTAssertEqual(full.out, a.out + b.out, "\(kind): a row's output depends on its batch")
            XCTAssertNotEqual(a.g, b.g)
            for threads in [2, 3] {
                let t = gradient(0, 8, chunk: 4, threads: threads)
                XCTAssertEqual(t.g, full.g, "\(kind): \(threads) threads")
                XCTAssertEqual(t.out, full.out, "\(kind): \(threads) threads")
            }
        }
    }
}
