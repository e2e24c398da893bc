// The model's forward and backward passes over one batch, written out layer by layer on buffers
// allocated once (llm.c style): parameter gradients are written, never accumulated across calls.
#if canImport(Glibc)
import Glibc
#endif
import Kernels

/// Activations and gradient buffers for batches of up to `capacity` rows; allocated once.
public final class Workspace: @unchecked Sendable {
    public let capacity: Int
    let model: Autoencoder
    /// Clean inputs, scaled to the model's units: the reconstruction target. Callers fill it.
    public let input: FloatBuffer
    /// Inputs after denoising corruption (unused without noise).
    let corrupted: FloatBuffer
    let encoderOutputs: [FloatBuffer]
    /// AE: the code; VAE: means and log-variances side by side ([rows, 2·latent]).
    public let codeOutput: FloatBuffer
    /// VAE: the sampled latent z; AE: unused (the code is the latent).
    let sampled: FloatBuffer
    let noise: FloatBuffer
    let decoderOutputs: [FloatBuffer]
    let gradient: FloatBuffer
    let gradientBelow: FloatBuffer
    let codeGradient: FloatBuffer
    /// Per-row loss terms of the last forward pass (nats or squared error per sample).
    public let reconstruction: FloatBuffer
    public let kl: FloatBuffer
    public let sparsity: FloatBuffer
    let scratch: FloatBuffer
    /// Whether the last forward pass fed the encoder a corrupted copy of the input.
    var inputWasCorrupted = false

    public init(model: Autoencoder, capacity: Int) {
        self.model = model
        self.capacity = capacity
        let s = model.spec
        input = FloatBuffer(count: capacity * s.inputs)
        corrupted = FloatBuffer(count: s.noise == .none ? 0 : capacity * s.inputs)
        encoderOutputs = model.encoder.map { FloatBuffer(count: capacity * $0.outputs) }
        codeOutput = FloatBuffer(count: capacity * model.code.outputs)
        sampled = FloatBuffer(count: s.kind == .vae ? capacity * s.latent : 0)
        noise = FloatBuffer(count: s.kind == .vae ? capacity * s.latent : 0)
        decoderOutputs = model.decoder.map { FloatBuffer(count: capacity * $0.outputs) }
        let widest = model.layers.map { max($0.inputs, $0.outputs) }.max()!
        gradient = FloatBuffer(count: capacity * widest)
        gradientBelow = FloatBuffer(count: capacity * widest)
        codeGradient = FloatBuffer(count: capacity * model.code.outputs)
        reconstruction = FloatBuffer(count: capacity)
        kl = FloatBuffer(count: capacity)
        sparsity = FloatBuffer(count: capacity)
        scratch = FloatBuffer(count: columnSumsScratchCount(rows: capacity, columns: widest, chunk: 1))
    }

    /// The decoder's last output: logits (Bernoulli) or means (Gaussian), [rows, inputs].
    public var outputs: UnsafeMutablePointer<Float> { decoderOutputs.last!.pointer }
    /// The latent the decoder saw: the code (AE) or the sample z (VAE), [rows, latent].
    public var latent: UnsafeMutablePointer<Float> { model.spec.kind == .vae ? sampled.pointer : codeOutput.pointer }
}

/// Where the random draws of a pass come from: row r uses sample number `firstSample + r`.
public struct NoiseSource: Sendable {
    public let seed: UInt64
    public let firstSample: UInt64
    public let latentStream: RandomStream
    /// Draw the VAE's latent noise (false: use the means, e.g. for encoding).
    public let sampleLatent: Bool
    /// Corrupt the inputs as model.denoise says (training only).
    public let corruptInputs: Bool

    public init(seed: UInt64, firstSample: UInt64, latentStream: RandomStream = .latentNoise,
                sampleLatent: Bool = true, corruptInputs: Bool) {
        self.seed = seed; self.firstSample = firstSample; self.latentStream = latentStream
        self.sampleLatent = sampleLatent; self.corruptInputs = corruptInputs
    }
}

/// One dense layer forward: out = f(inp Wᵀ + b).
func denseForward(_ layer: DenseLayer, out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int,
                  parameters: UnsafePointer<Float>, pool: ComputePool) {
    matrixProduct(m: rows, n: layer.outputs, k: layer.inputs,
                  a: inp, lda: layer.inputs, transposeA: false,
                  b: parameters + layer.weight, ldb: layer.inputs, transposeB: true,
                  c: out, ldc: layer.outputs, accumulate: false, pool: pool)
    addBiasAndActivate(out, bias: parameters + layer.bias, rows: rows, columns: layer.outputs,
                       activation: layer.activation, pool: pool)
}

/// What `backward` tells its caller while it runs, so that the caller can send finished gradients
/// across ranks during the rest of the pass. Called on the thread that called `backward`.
public enum BackwardEvent {
    /// gradients[range] hold their final values: this pass will not write them again.
    case gradientsFinal(Range<Int>)
    /// Between two matrix products: a moment to let messages move.
    case betweenProducts
}

/// One dense layer backward, given dout (already through the activation's derivative):
/// db = Σ dout and dW = doutᵀ inp (pairwise tree over micro-batches), then dinp = dout W when asked.
/// dW is computed in `weightBlocks` row blocks (Autoencoder.weightBlock), last rows first, each reported
/// final as soon as it is computed (the first with db, which follows dW in the buffer). Every element
/// of dW is the same number whatever the blocks: the product computes each element independently of
/// the other rows in the call.
func denseBackward(_ layer: DenseLayer, dinp: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                   inp: UnsafePointer<Float>, rows: Int, chunk: Int, parameters: UnsafePointer<Float>,
                   gradients: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                   weightBlocks: Int = 1, pool: ComputePool, report: (BackwardEvent) throws -> Void) rethrows {
    columnSums(dout, rows: rows, columns: layer.outputs, chunk: chunk,
               into: gradients + layer.bias, scratch: scratch)
    for block in (0..<weightBlocks).reversed() {
        let (units, final) = Autoencoder.weightBlock(block, of: weightBlocks, layer: layer)
        if units.isEmpty { continue }
        matrixProduct(m: units.count, n: layer.inputs, k: rows,
                      a: dout + units.lowerBound, lda: layer.outputs, transposeA: true,
                      b: inp, ldb: layer.inputs, transposeB: false,
                      c: gradients + final.lowerBound, ldc: layer.inputs, accumulate: false,
                      reductionChunk: chunk, pool: pool)
        try report(.gradientsFinal(final))
    }
    if let dinp {
        matrixProduct(m: rows, n: layer.inputs, k: layer.outputs,
                      a: dout, lda: layer.outputs, transposeA: false,
                      b: parameters + layer.weight, ldb: layer.inputs, transposeB: false,
                      c: dinp, ldc: layer.inputs, accumulate: false, pool: pool)
        try report(.betweenProducts)
    }
}

extension Autoencoder {
    /// The layer whose gradients backward finishes last (the first encoder layer, or the code layer).
    var lastInBackward: DenseLayer { encoder.first ?? code }

    /// Row `block` of `blocks` (0...blocks) where the last layer's weight gradient is cut: near-equal
    /// blocks on multiples of the micro-kernel's rows (`productRowTile`), so no block wastes lanes.
    static func weightBlockBoundary(_ block: Int, of blocks: Int, rows: Int) -> Int {
        let tile = productRowTile
        return min(rows, (rows * block / blocks + tile - 1) / tile * tile)
    }

    /// Block `block` of `blocks` of a layer's weight gradient: its output units (rows of W, possibly
    /// none) and the range of the gradient buffer it makes final (the last block also takes the bias).
    static func weightBlock(_ block: Int, of blocks: Int, layer: DenseLayer) -> (units: Range<Int>, final: Range<Int>) {
        let r0 = weightBlockBoundary(block, of: blocks, rows: layer.outputs)
        let r1 = weightBlockBoundary(block + 1, of: blocks, rows: layer.outputs)
        let end = r1 == layer.outputs ? layer.bias + layer.outputs : layer.weight + r1 * layer.inputs
        return (r0..<r1, (layer.weight + r0 * layer.inputs)..<end)
    }

    /// The ranges of the gradient buffer that `backward(... lastLayerBlocks:)` reports final, in the
    /// order it reports them: each layer's weights and bias from the output layer down to the input,
    /// the last layer's weights cut into up to `lastLayerBlocks` row blocks, last rows first. They tile
    /// the buffer from its end down to 0.
    public func finalGradientRanges(lastLayerBlocks: Int) -> [Range<Int>] {
        precondition(lastLayerBlocks >= 1)
        var ranges: [Range<Int>] = []
        for layer in layers.reversed() {
            let blocks = layer.weight == lastInBackward.weight ? lastLayerBlocks : 1
            for block in (0..<blocks).reversed() {
                let (units, final) = Autoencoder.weightBlock(block, of: blocks, layer: layer)
                if !units.isEmpty { ranges.append(final) }
            }
        }
        return ranges
    }
}

extension Autoencoder {
    /// Runs the model on `rows` rows of `workspace.input`, leaving every activation and the per-row
    /// loss terms (reconstruction, KL, sparsity penalty) in the workspace.
    public func forward(_ parameters: FloatBuffer, _ ws: Workspace, rows: Int, noise: NoiseSource, pool: ComputePool) {
        precondition(rows <= ws.capacity)
        let p = UnsafePointer(parameters.pointer)
        var x = UnsafePointer(ws.input.pointer)
        ws.inputWasCorrupted = noise.corruptInputs && spec.noise != .none
        if ws.inputWasCorrupted {
            corrupt(ws.input.pointer, into: ws.corrupted.pointer, rows: rows, noise: noise, pool: pool)
            x = UnsafePointer(ws.corrupted.pointer)
        }
        var a = x
        for (i, layer) in encoder.enumerated() {
            denseForward(layer, out: ws.encoderOutputs[i].pointer, inp: a, rows: rows, parameters: p, pool: pool)
            a = UnsafePointer(ws.encoderOutputs[i].pointer)
        }
        denseForward(code, out: ws.codeOutput.pointer, inp: a, rows: rows, parameters: p, pool: pool)
        let z = spec.latent
        if spec.kind == .vae {
            let heads = ws.codeOutput.pointer, eps = ws.noise.pointer, out = ws.sampled.pointer
            for r in 0..<rows {
                let key = RandomKey(seed: noise.seed, stream: noise.latentStream, noise.firstSample + UInt64(r))
                var klSum: Float = 0
                for j in 0..<z {
                    let mu = heads[r * 2 * z + j], lv = heads[r * 2 * z + z + j]
                    let e: Float = noise.sampleLatent ? key.normal(UInt64(j)) : 0
                    eps[r * z + j] = e
                    out[r * z + j] = mu + expf(0.5 * lv) * e
                    klSum += -0.5 * (1 + lv - mu * mu - expf(lv))
                }
                ws.kl.pointer[r] = klSum
            }
            a = UnsafePointer(out)
        } else {
            ws.kl.pointer.update(repeating: 0, count: rows)
            a = UnsafePointer(ws.codeOutput.pointer)
        }
        let rho = spec.sparsityTarget, beta = spec.sparsityKLWeight
        for r in 0..<rows {
            var s: Float = 0
            if spec.l1 != 0 { for j in 0..<z { s += abs(a[r * z + j]) } }
            var kl: Float = 0
            if rho > 0 && beta != 0 {   // sigmoid codes: KL(ρ ‖ h) per unit
                for j in 0..<z {
                    let h = min(max(a[r * z + j], 1e-7), 1 - 1e-7)
                    kl += rho * logf(rho / h) + (1 - rho) * logf((1 - rho) / (1 - h))
                }
            }
            ws.sparsity.pointer[r] = spec.l1 * s + beta * kl
        }
        for (i, layer) in decoder.enumerated() {
            denseForward(layer, out: ws.decoderOutputs[i].pointer, inp: a, rows: rows, parameters: p, pool: pool)
            a = UnsafePointer(ws.decoderOutputs[i].pointer)
        }
        // Loss only here; backward writes the gradient with the same function (lossTerms).
        lossTerms(ws, rows: rows, scale: 0, gradient: nil, pool: pool)
    }

    /// Per-sample training loss: reconstruction + kl_weight * KL + sparsity penalty.
    public func loss(_ ws: Workspace, row r: Int) -> Float {
        ws.reconstruction.pointer[r] + spec.klWeight * ws.kl.pointer[r] + ws.sparsity.pointer[r]
    }

    private func lossTerms(_ ws: Workspace, rows: Int, scale: Float, gradient: UnsafeMutablePointer<Float>?,
                           pool: ComputePool) {
        switch spec.output {
        case .bernoulli:
            bernoulliLoss(logits: ws.outputs, targets: ws.input.pointer, rows: rows, columns: spec.inputs,
                          scale: scale, gradient: gradient, perRow: ws.reconstruction.pointer, pool: pool)
        case .gaussian:
            squaredErrorLoss(outputs: ws.outputs, targets: ws.input.pointer, rows: rows, columns: spec.inputs,
                             scale: scale, gradient: gradient, perRow: ws.reconstruction.pointer, pool: pool)
        }
    }

    /// Gradients of Σ_rows loss(row) · scale with respect to every parameter, written into `gradients`
    /// (same layout as the parameters). Call after `forward` on the same rows. `rows` must be a multiple
    /// of `chunk` (the micro-batch): sums over rows use the pairwise tree over chunks.
    public func backward(_ parameters: FloatBuffer, _ gradients: FloatBuffer, _ ws: Workspace, rows: Int,
                         chunk: Int, scale: Float, pool: ComputePool) {
        backward(parameters, gradients, ws, rows: rows, chunk: chunk, scale: scale, pool: pool, lastLayerBlocks: 1) { _ in }
    }

    /// `backward` telling `report` each range of the gradient as it becomes final (in the order of
    /// `finalGradientRanges(lastLayerBlocks:)`) and each pause between matrix products; the last
    /// layer's weight gradient is computed in `lastLayerBlocks` row blocks, which changes no bit.
    public func backward(_ parameters: FloatBuffer, _ gradients: FloatBuffer, _ ws: Workspace, rows: Int,
                         chunk: Int, scale: Float, pool: ComputePool, lastLayerBlocks: Int,
                         report: (BackwardEvent) throws -> Void) rethrows {
        precondition(lastLayerBlocks >= 1)
        let p = UnsafePointer(parameters.pointer), g = gradients.pointer
        let scratch = ws.scratch.pointer
        var dout = ws.gradient.pointer, dbelow = ws.gradientBelow.pointer
        lossTerms(ws, rows: rows, scale: scale, gradient: dout, pool: pool)
        // Decoder, output side first.
        for i in stride(from: decoder.count - 1, through: 0, by: -1) {
            let layer = decoder[i]
            if i < decoder.count - 1 {
                multiplyByActivationDerivative(dout, output: ws.decoderOutputs[i].pointer,
                                               count: rows * layer.outputs, activation: layer.activation, pool: pool)
            }
            let inp = i > 0 ? UnsafePointer(ws.decoderOutputs[i - 1].pointer) : UnsafePointer(ws.latent)
            try denseBackward(layer, dinp: dbelow, dout: dout, inp: inp, rows: rows, chunk: chunk,
                              parameters: p, gradients: g, scratch: scratch, pool: pool, report: report)
            swap(&dout, &dbelow)
        }
        // dout now holds dLoss/dlatent [rows, latent].
        let z = spec.latent
        let dcode = ws.codeGradient.pointer
        if spec.kind == .vae {
            let heads = ws.codeOutput.pointer, eps = ws.noise.pointer
            let klScale = trainingKLWeight * scale
            for r in 0..<rows {
                for j in 0..<z {
                    let mu = heads[r * 2 * z + j], lv = heads[r * 2 * z + z + j]
                    let dz = dout[r * z + j]
                    let sd = expf(0.5 * lv)
                    dcode[r * 2 * z + j] = dz + klScale * mu
                    dcode[r * 2 * z + z + j] = dz * eps[r * z + j] * 0.5 * sd + klScale * 0.5 * (sd * sd - 1)
                }
            }
            if spec.l1 != 0 {   // the penalty is on the sample the decoder saw
                let s = ws.sampled.pointer
                for r in 0..<rows { for j in 0..<z {
                    let v = s[r * z + j], sg: Float = v > 0 ? 1 : (v < 0 ? -1 : 0)
                    let d = spec.l1 * scale * sg, sd = expf(0.5 * heads[r * 2 * z + z + j])
                    dcode[r * 2 * z + j] += d
                    dcode[r * 2 * z + z + j] += d * eps[r * z + j] * 0.5 * sd
                } }
            }
        } else {
            let c = ws.codeOutput.pointer
            let rho = spec.sparsityTarget, klScale = spec.sparsityKLWeight * scale
            for i in 0..<(rows * z) {
                let v = c[i], sg: Float = v > 0 ? 1 : (v < 0 ? -1 : 0)
                var d = dout[i] + spec.l1 * scale * sg
                if rho > 0 {   // d KL(ρ ‖ h) / dh, before the sigmoid's derivative below
                    let h = min(max(v, 1e-7), 1 - 1e-7)
                    d += klScale * (-rho / h + (1 - rho) / (1 - h))
                }
                dcode[i] = d
            }
            multiplyByActivationDerivative(dcode, output: c, count: rows * z, activation: code.activation, pool: pool)
        }
        let codeInput = encoder.isEmpty ? UnsafePointer(inputSeen(ws)) : UnsafePointer(ws.encoderOutputs.last!.pointer)
        try denseBackward(code, dinp: encoder.isEmpty ? nil : dout, dout: dcode, inp: codeInput, rows: rows,
                          chunk: chunk, parameters: p, gradients: g, scratch: scratch,
                          weightBlocks: encoder.isEmpty ? lastLayerBlocks : 1, pool: pool, report: report)
        for i in stride(from: encoder.count - 1, through: 0, by: -1) {
            let layer = encoder[i]
            multiplyByActivationDerivative(dout, output: ws.encoderOutputs[i].pointer,
                                           count: rows * layer.outputs, activation: layer.activation, pool: pool)
            let inp = i > 0 ? UnsafePointer(ws.encoderOutputs[i - 1].pointer) : UnsafePointer(inputSeen(ws))
            try denseBackward(layer, dinp: i > 0 ? dbelow : nil, dout: dout, inp: inp, rows: rows, chunk: chunk,
                              parameters: p, gradients: g, scratch: scratch, weightBlocks: i == 0 ? lastLayerBlocks : 1,
                              pool: pool, report: report)
            swap(&dout, &dbelow)
        }
    }

    /// The encoder's input: the corrupted copy when denoising, else the clean input.
    private func inputSeen(_ ws: Workspace) -> UnsafeMutablePointer<Float> {
        ws.inputWasCorrupted ? ws.corrupted.pointer : ws.input.pointer
    }

    /// Denoising corruption of the inputs; draws keyed by (seed, sample number, feature).
    func corrupt(_ clean: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, rows: Int,
                 noise: NoiseSource, pool: ComputePool) {
        let d = spec.inputs, level = spec.noiseLevel
        for r in 0..<rows {
            let key = RandomKey(seed: noise.seed, stream: .inputNoise, noise.firstSample + UInt64(r))
            let x = clean + r * d, y = out + r * d
            switch spec.noise {
            case .none: y.update(from: x, count: d)
            case .gaussian: for c in 0..<d { y[c] = x[c] + level * key.normal(UInt64(c)) }
            case .masking: for c in 0..<d { y[c] = key.uniform(UInt64(c)) < level ? 0 : x[c] }
            case .saltPepper:
                for c in 0..<d {
                    let u = key.uniform(UInt64(c))
                    y[c] = u < level ? (u < level / 2 ? 0 : 1) : x[c]
                }
            }
        }
    }
}
