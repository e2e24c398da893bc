// Pictures of what models do, as PNG files (Storage/PNG.swift): grids of images (reconstructions
// under their originals, samples, interpolation strips) and a 2-D map of latent codes coloured by label.
import Foundation
import Storage

public struct ImageShape: Equatable, Sendable {
    public let height: Int
    public let width: Int

    /// "HxW", e.g. "28x28".
    public init(parsing text: String) throws {
        let parts = text.lowercased().split(separator: "x")
        guard parts.count == 2, let h = Int(parts[0]), let w = Int(parts[1]), h > 0, w > 0 else {
            throw ConfigError("--image-shape '\(text)': expected HEIGHTxWIDTH with positive integers, like 28x28")
        }
        height = h; width = w
    }

    public init(height: Int, width: Int) { self.height = height; self.width = width }

    /// A grayscale picture of a sample shaped `dims`: [H, W], or with a channel axis of 1 before
    /// or after ([H, W, 1] as Keras writes, [1, H, W] as PyTorch does); nil for anything else.
    public init?(sampleShape dims: [Int]) {
        let d = ImageShape.channelsDropped(dims)
        guard d.count == 2, d[0] > 0, d[1] > 0 else { return nil }
        height = d[0]; width = d[1]
    }

    /// `dims` without a channel axis of 1 ([H, W, 1] and [1, H, W] are [H, W]).
    static func channelsDropped(_ dims: [Int]) -> [Int] {
        var d = dims
        if d.count == 3, d[2] == 1 { d.removeLast() } else if d.count == 3, d[0] == 1 { d.removeFirst() }
        return d
    }

    /// `override` (from --image-shape), else `known` (a trained model's `data.image_shape`, or an
    /// N-D dataset's own sample shape), else the data file's `image_shape` root attribute (int64
    /// [H, W]); H·W must equal the number of features.
    public static func resolve(override: String?, known: [Int]? = nil, dataFile: String, features: Int) throws -> ImageShape {
        let shape: ImageShape
        if override == nil, let known {
            guard let picture = ImageShape(sampleShape: known), picture.height * picture.width == features else {
                throw ConfigError("samples of shape \(known) are not drawn as grayscale pictures (only [H, W], [H, W, 1] and [1, H, W] are); give the picture size with --image-shape HxW (H·W = \(features))")
            }
            return picture
        }
        if let override {
            shape = try ImageShape(parsing: override)
            guard shape.height * shape.width == features else {
                throw ConfigError("--image-shape \(override): \(shape.height * shape.width) pixels, but the data has \(features) features per row")
            }
            return shape
        }
        let file = try HDF5File(readingAt: dataFile)
        defer { file.close() }
        guard file.hasAttribute("image_shape") else {
            throw ConfigError("data file '\(dataFile)': no image_shape attribute; give the picture size with --image-shape HxW (H·W = \(features))")
        }
        let values = try file.int64ArrayAttribute("image_shape")
        guard values.count == 2, values[0] > 0, values[1] > 0 else {
            throw ConfigError("data file '\(dataFile)': attribute image_shape is \(values), expected [height, width]; override it with --image-shape HxW")
        }
        shape = ImageShape(height: Int(values[0]), width: Int(values[1]))
        guard shape.height * shape.width == features else {
            throw ConfigError("data file '\(dataFile)': image_shape \(values) has \(shape.height * shape.width) pixels but the rows have \(features) features; use --image-shape HxW")
        }
        return shape
    }
}

/// A grid of grayscale tiles separated by `gap` pixels of mid-gray; values in [0, 1] (clamped).
/// Small pictures are magnified by pixel replication (`zoom`: by default so a tile is at least 24 pixels).
public struct TileGrid {
    public let shape: ImageShape
    public let rows: Int
    public let columns: Int
    public let gap: Int
    public let zoom: Int
    public private(set) var image: PixelImage

    public static func defaultZoom(_ shape: ImageShape) -> Int { max(1, 24 / max(shape.height, shape.width)) }

    public init(shape: ImageShape, rows: Int, columns: Int, gap: Int = 1, zoom: Int? = nil) {
        self.shape = shape; self.rows = rows; self.columns = columns; self.gap = gap
        let zoom = zoom ?? TileGrid.defaultZoom(shape)
        self.zoom = zoom
        image = PixelImage(width: columns * shape.width * zoom + (columns + 1) * gap,
                           height: rows * shape.height * zoom + (rows + 1) * gap, channels: 1, fill: 128)
    }

    /// Draws one tile from `values` (height × width, row-major).
    public mutating func draw(row: Int, column: Int, _ values: UnsafeBufferPointer<Float>) {
        precondition(values.count == shape.height * shape.width)
        let th = shape.height * zoom, tw = shape.width * zoom
        let x0 = gap + column * (tw + gap), y0 = gap + row * (th + gap)
        for y in 0..<th {
            for x in 0..<tw {
                let v = values[(y / zoom) * shape.width + x / zoom]
                let byte = UInt8((min(max(v.isNaN ? 0 : v, 0), 1) * 255).rounded())
                image.pixels[(y0 + y) * image.width + x0 + x] = byte
            }
        }
    }

    /// Draws tile `index` of a row-major [count, features] array.
    public mutating func draw(row: Int, column: Int, from array: [Float], index: Int) {
        let n = shape.height * shape.width
        array.withUnsafeBufferPointer { draw(row: row, column: column, UnsafeBufferPointer(rebasing: $0[(index * n)..<((index + 1) * n)])) }
    }
}

public enum Pictures {
    /// Originals above their reconstructions: `count` pairs in bands of up to `perRow` columns, each band
    /// a row of originals over a row of reconstructions.
    public static func reconstructions(originals: [Float], outputs: [Float], count: Int, shape: ImageShape,
                                       perRow: Int = 16) -> PixelImage {
        let columns = max(1, min(perRow, count)), bands = (count + columns - 1) / columns
        var grid = TileGrid(shape: shape, rows: 2 * bands, columns: columns)
        for i in 0..<count {
            grid.draw(row: 2 * (i / columns), column: i % columns, from: originals, index: i)
            grid.draw(row: 2 * (i / columns) + 1, column: i % columns, from: outputs, index: i)
        }
        return grid.image
    }

    /// Several models' reconstructions of the same originals: originals on the first row, one row per model.
    public static func comparison(originals: [Float], outputs: [[Float]], count: Int, shape: ImageShape) -> PixelImage {
        var grid = TileGrid(shape: shape, rows: 1 + outputs.count, columns: count)
        for i in 0..<count {
            grid.draw(row: 0, column: i, from: originals, index: i)
            for (m, out) in outputs.enumerated() { grid.draw(row: 1 + m, column: i, from: out, index: i) }
        }
        return grid.image
    }

    /// `count` images in a near-square grid, row by row.
    public static func grid(_ images: [Float], count: Int, shape: ImageShape) -> PixelImage {
        let columns = max(1, Int(Double(count).squareRoot().rounded(.up)))
        let rows = (count + columns - 1) / columns
        var grid = TileGrid(shape: shape, rows: max(rows, 1), columns: columns)
        for i in 0..<count { grid.draw(row: i / columns, column: i % columns, from: images, index: i) }
        return grid.image
    }

    /// Interpolation strips: per pair, the original start, the `steps` decoded points, the original end.
    public static func strips(path: [Float], starts: [Float], ends: [Float], pairs: Int, steps: Int,
                              shape: ImageShape) -> PixelImage {
        var grid = TileGrid(shape: shape, rows: pairs, columns: steps + 2)
        for p in 0..<pairs {
            grid.draw(row: p, column: 0, from: starts, index: p)
            for s in 0..<steps { grid.draw(row: p, column: 1 + s, from: path, index: p * steps + s) }
            grid.draw(row: p, column: steps + 1, from: ends, index: p)
        }
        return grid.image
    }

    /// Ten distinguishable colours (matplotlib's tab10); labels beyond 9 reuse them.
    public static let palette: [[UInt8]] = [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
        [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    ]

    /// A scatter plot of 2-D points on a white square, each a 3×3 dot in its label's colour (black
    /// without labels); along the top edge a legend: each label's colour swatch and its value
    /// written beside it (the first ten labels in order; colours repeat beyond ten).
    public static func map(points: [(Double, Double)], labels: [Int]?, size: Int = 512) -> PixelImage {
        var image = PixelImage(width: size, height: size, channels: 3, fill: 255)
        guard !points.isEmpty else { return image }
        let xs = points.map(\.0), ys = points.map(\.1)
        let (x0, x1) = (xs.min()!, xs.max()!), (y0, y1) = (ys.min()!, ys.max()!)
        let margin = 16
        func place(_ v: Double, _ lo: Double, _ hi: Double) -> Int {
            let t = hi > lo ? (v - lo) / (hi - lo) : 0.5
            return margin + Int((t * Double(size - 2 * margin - 1)).rounded())
        }
        for (i, p) in points.enumerated() {
            let colour = labels.map { palette[(($0[i] % 10) + 10) % 10] } ?? [0, 0, 0]
            let cx = place(p.0, x0, x1), cy = size - 1 - place(p.1, y0, y1)
            for dy in -1...1 { for dx in -1...1 { image.set(x: cx + dx, y: cy + dy, colour) } }
        }
        if let labels {
            var x = 4
            for label in Array(Set(labels)).sorted().prefix(10) {
                let colour = palette[((label % 10) + 10) % 10]
                for dy in 3..<13 { for dx in 0..<10 { image.set(x: x + dx, y: dy, colour) } }
                x += 13
                x = PixelText.draw(String(label), into: &image, x: x, y: 3) + 9
            }
        }
        return image
    }

    /// 2-D coordinates of `rows` codes of `width` values: the codes themselves when width is 2 (1: the
    /// code against 0), else their projection on the codes' first two principal directions.
    public static func planar(codes: [Float], rows: Int, width: Int) -> [(Double, Double)] {
        if width <= 2 {
            return (0..<rows).map { r in (Double(codes[r * width]), width == 2 ? Double(codes[r * width + 1]) : 0) }
        }
        var mean = [Double](repeating: 0, count: width)
        for r in 0..<rows { for j in 0..<width { mean[j] += Double(codes[r * width + j]) } }
        for j in 0..<width { mean[j] /= Double(max(rows, 1)) }
        var covariance = [Double](repeating: 0, count: width * width)
        for r in 0..<rows {
            for i in 0..<width {
                let a = Double(codes[r * width + i]) - mean[i]
                for j in 0..<width { covariance[i * width + j] += a * (Double(codes[r * width + j]) - mean[j]) }
            }
        }
        let eigen = SymmetricEigen(symmetric: covariance, n: width)
        return (0..<rows).map { r in
            var u = 0.0, v = 0.0
            for j in 0..<width {
                let c = Double(codes[r * width + j]) - mean[j]
                u += c * eigen.vectors[j]; v += c * eigen.vectors[width + j]
            }
            return (u, v)
        }
    }
}
