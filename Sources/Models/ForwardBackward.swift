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
    /// Each layer's output, in the order of `model.layers`.
    let activations: [FloatBuffer]
    /// VAE: the sampled latent z; AE: unused (the code is the latent).
    let sampled: FloatBuffer
    let noise: FloatBuffer
    let gradient: FloatBuffer
    let gradientBelow: FloatBuffer
    /// Per-row loss terms of the last forward pass (nats or squared error per sample).
    public let reconstruction: FloatBuffer
    public let kl: FloatBuffer
    public let sparsity: FloatBuffer
    let columnScratch: FloatBuffer
    /// The layers' own scratch (convolution patches), the largest any layer needs.
    let layerScratch: FloatBuffer
    /// Whether the last forward pass fed the encoder a corrupted copy of the input.
    var inputWasCorrupted = false

    /// Floats of every buffer a workspace for `capacity` rows of `model` holds.
    public static func floatCount(model: Autoencoder, capacity: Int) -> Int {
        sizes(model, capacity).reduce(0, +)
    }

    /// The buffers' sizes, in the order `init` allocates them.
    private static func sizes(_ model: Autoencoder, _ capacity: Int) -> [Int] {
        let s = model.spec, layers = model.layers
        let widest = layers.map { max($0.input.count, $0.output.count) }.max()!
        var sizes = [capacity * s.inputs, s.noise == .none ? 0 : capacity * s.inputs]
        sizes += layers.map { capacity * $0.output.count }
        sizes += [s.kind == .vae ? capacity * s.latent : 0, s.kind == .vae ? capacity * s.latent : 0,
                  capacity * widest, capacity * widest, capacity, capacity, capacity,
                  columnSumsScratchCount(rows: capacity, columns: widest, chunk: 1),
                  layers.map { $0.scratchCount(rows: capacity) }.max()!]
        return sizes
    }

    public init(model: Autoencoder, capacity: Int) {
        self.model = model
        self.capacity = capacity
        var sizes = Workspace.sizes(model, capacity).makeIterator()
        func next() -> FloatBuffer { FloatBuffer(count: sizes.next()!) }
        input = next(); corrupted = next()
        activations = model.layers.map { _ in next() }
        sampled = next(); noise = next()
        gradient = next(); gradientBelow = next()
        reconstruction = next(); kl = next(); sparsity = next()
        columnScratch = next(); layerScratch = next()
    }

    /// The decoder's last output: logits (Bernoulli) or means (Gaussian), [rows, inputs].
    public var outputs: UnsafeMutablePointer<Float> { activations.last!.pointer }
    /// The encoder's output, `model.codeWidth` per row: the code (AE), or the means then the
    /// log-variances (VAE).
    public var codes: UnsafeMutablePointer<Float> { activations[model.codeIndex].pointer }
    /// The latent the decoder saw: the code (AE) or the sample z (VAE), [rows, latent].
    public var latent: UnsafeMutablePointer<Float> { model.spec.kind == .vae ? sampled.pointer : codes }
    /// Unit j of row r's code: the code (AE) or the mean (VAE).
    public func code(row r: Int, unit j: Int) -> Float { codes[r * model.codeWidth + j] }
    /// A VAE's log-variance of unit j of row r.
    public func logVariance(row r: Int, unit j: Int) -> Float { codes[r * model.codeWidth + model.spec.latent + j] }

    var scratch: LayerScratch { LayerScratch(columnSums: columnScratch.pointer, own: layerScratch.pointer) }
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

extension Autoencoder {
    /// The ranges of the gradient buffer that `backward(... lastLayerBlocks:)` reports final, in the
    /// order it reports them: each layer's parameters from the output layer down to the input, the
    /// first layer's cut into up to `lastLayerBlocks` blocks (dense layers), last rows first. They
    /// tile the buffer from its end down to 0.
    public func finalGradientRanges(lastLayerBlocks: Int) -> [Range<Int>] {
        precondition(lastLayerBlocks >= 1)
        return layers.indices.reversed().flatMap { layers[$0].finalRanges(weightBlocks: $0 == 0 ? lastLayerBlocks : 1) }
    }

    /// The input of layer `index` in the last forward pass.
    private func input(of index: Int, _ ws: Workspace) -> UnsafePointer<Float> {
        if index == 0 { return UnsafePointer(inputSeen(ws)) }
        return UnsafePointer(index == codeIndex + 1 ? ws.latent : ws.activations[index - 1].pointer)
    }
}

extension Autoencoder {
    /// Runs the model on `rows` rows of `workspace.input`, leaving every activation and the per-row
    /// loss terms (reconstruction, KL, sparsity penalty) in the workspace.
    public func forward(_ parameters: FloatBuffer, _ ws: Workspace, rows: Int, noise: NoiseSource, pool: ComputePool) {
        precondition(rows <= ws.capacity)
        let p = UnsafePointer(parameters.pointer)
        ws.inputWasCorrupted = noise.corruptInputs && spec.noise != .none
        if ws.inputWasCorrupted { corrupt(ws.input.pointer, into: ws.corrupted.pointer, rows: rows, noise: noise, pool: pool) }
        for (index, layer) in layers.enumerated() {
            layer.forward(out: ws.activations[index].pointer, inp: input(of: index, ws), rows: rows, parameters: p,
                          scratch: ws.scratch, pool: pool)
            if index == codeIndex { codeForward(ws, rows: rows, noise: noise) }
        }
        // Loss only here; backward writes the gradient with the same function (lossTerms).
        lossTerms(ws, rows: rows, scale: 0, gradient: nil, pool: pool)
    }

    /// Decodes `rows` latent vectors (`latent` per row) into `ws.outputs` (logits or means).
    public func decode(_ parameters: FloatBuffer, latent: UnsafePointer<Float>, rows: Int, _ ws: Workspace, pool: ComputePool) {
        precondition(rows <= ws.capacity)
        var a = latent
        for index in (codeIndex + 1)..<layers.count {
            layers[index].forward(out: ws.activations[index].pointer, inp: a, rows: rows,
                                  parameters: UnsafePointer(parameters.pointer), scratch: ws.scratch, pool: pool)
            a = UnsafePointer(ws.activations[index].pointer)
        }
    }

    /// The code layer's stage: the VAE's reparameterised sample and KL term, and the sparsity penalty
    /// on the latent the decoder sees.
    private func codeForward(_ ws: Workspace, rows: Int, noise: NoiseSource) {
        let z = spec.latent
        if spec.kind == .vae {
            let heads = ws.codes, eps = ws.noise.pointer, out = ws.sampled.pointer
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
        } else {
            ws.kl.pointer.update(repeating: 0, count: rows)
        }
        let a = ws.latent
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
    /// `finalGradientRanges(lastLayerBlocks:)`) and each pause between matrix products; the first
    /// layer's weight gradient is computed in `lastLayerBlocks` row blocks, which changes no bit.
    public func backward(_ parameters: FloatBuffer, _ gradients: FloatBuffer, _ ws: Workspace, rows: Int,
                         chunk: Int, scale: Float, pool: ComputePool, lastLayerBlocks: Int,
                         report: (BackwardEvent) throws -> Void) rethrows {
        precondition(lastLayerBlocks >= 1)
        let p = UnsafePointer(parameters.pointer), g = gradients.pointer
        var dout = ws.gradient.pointer, dbelow = ws.gradientBelow.pointer
        lossTerms(ws, rows: rows, scale: scale, gradient: dout, pool: pool)
        for index in layers.indices.reversed() {
            let layer = layers[index]
            if index == codeIndex {   // dout holds dLoss/dlatent [rows, latent]
                codeBackward(ws, rows: rows, scale: scale, dlatent: dout, dcode: dbelow)
                swap(&dout, &dbelow)
            }
            if index < layers.count - 1 {   // the loss's gradient is already the output layer's pre-activation one
                multiplyByActivationDerivative(dout, output: ws.activations[index].pointer, count: rows * layer.output.count,
                                               activation: layer.activation, pool: pool)
            }
            try layer.backward(dinp: index > 0 ? dbelow : nil, dout: dout, inp: input(of: index, ws), rows: rows, chunk: chunk,
                               parameters: p, gradients: g, scratch: ws.scratch,
                               weightBlocks: index == 0 ? lastLayerBlocks : 1, pool: pool, report: report)
            swap(&dout, &dbelow)
        }
    }

    /// dLoss/dcode from dLoss/dlatent: through the VAE's sample and its KL term, or the AE's
    /// sparsity penalties (before the code layer's activation).
    private func codeBackward(_ ws: Workspace, rows: Int, scale: Float, dlatent dout: UnsafePointer<Float>,
                              dcode: UnsafeMutablePointer<Float>) {
        let z = spec.latent
        if spec.kind == .vae {
            let heads = ws.codes, eps = ws.noise.pointer
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
            let c = ws.codes
            let rho = spec.sparsityTarget, klScale = spec.sparsityKLWeight * scale
            for i in 0..<(rows * z) {
                let v = c[i], sg: Float = v > 0 ? 1 : (v < 0 ? -1 : 0)
                var d = dout[i] + spec.l1 * scale * sg
                if rho > 0 {   // d KL(ρ ‖ h) / dh, before the sigmoid's derivative
                    let h = min(max(v, 1e-7), 1 - 1e-7)
                    d += klScale * (-rho / h + (1 - rho) / (1 - h))
                }
                dcode[i] = d
            }
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
