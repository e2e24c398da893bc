// Line plots as PNG pictures (the report's loss curves): series of (step, value) on linear axes
// with round-number ticks, a grid, and a legend in the top margin.
import Foundation
import Storage

public struct PlotSeries {
    public let name: String
    public let points: [(x: Double, y: Double)]
    /// Marks each point (a few evaluations) besides joining them (many logged steps).
    public let marked: Bool
    public init(name: String, points: [(x: Double, y: Double)], marked: Bool = false) {
        self.name = name; self.points = points; self.marked = marked
    }
}

public enum LinePlot {
    /// `series` against one x axis, colours in order from `Pictures.palette`. The y axis spans the
    /// values after the first 5 % of the x range (the first steps' losses, far above the rest,
    /// would flatten the curves; they run off the top); a series without points is left out.
    public static func draw(_ series: [PlotSeries], xLabel: String, width: Int = 720, height: Int = 360) -> PixelImage {
        var image = PixelImage(width: width, height: height, channels: 3, fill: 255)
        let shown = series.filter { !$0.points.isEmpty }
        let all = shown.flatMap(\.points).filter { $0.y.isFinite }
        guard !all.isEmpty else {
            PixelText.draw("no values logged yet", into: &image, x: 20, y: height / 2)
            return image
        }
        let (x0, x1) = (all.map(\.x).min()!, all.map(\.x).max()!)
        let late = all.filter { $0.x >= x0 + 0.05 * (x1 - x0) }
        let ys = (late.isEmpty ? all : late).map(\.y)
        var (y0, y1) = (ys.min()!, ys.max()!)
        if y1 - y0 < 1e-12 * max(1, abs(y1)) { y0 -= max(1e-6, abs(y0) * 0.05); y1 += max(1e-6, abs(y1) * 0.05) }
        let pad = 0.04 * (y1 - y0)
        y0 -= pad; y1 += pad

        let scale = 2, charHeight = PixelText.height(scale: scale)
        let xTicks = ticks(x0, x1 > x0 ? x1 : x0 + 1, target: 8), yTicks = ticks(y0, y1, target: 6)
        let yLabels = labels(yTicks), xLabels = labels(xTicks)
        let left = 14 + (yLabels.map { PixelText.width($0, scale: scale) }.max() ?? 0)
        let top = 2 * charHeight + 12, bottom = height - (2 * charHeight + 18), right = width - 16
        func px(_ x: Double) -> Int { left + Int(((x - x0) / max(x1 - x0, 1e-300) * Double(right - left)).rounded()) }
        func py(_ y: Double) -> Int { bottom - Int(((y - y0) / (y1 - y0) * Double(bottom - top)).rounded()) }

        let grid: [UInt8] = [225, 225, 225], axis: [UInt8] = [0, 0, 0]
        for (t, text) in zip(yTicks, yLabels) where t >= y0 && t <= y1 {
            let y = py(t)
            line(&image, left, y, right, y, grid)
            PixelText.draw(text, into: &image, x: left - 8 - PixelText.width(text, scale: scale), y: y - charHeight / 2)
        }
        for (t, text) in zip(xTicks, xLabels) where t >= x0 && t <= x1 {
            let x = px(t)
            line(&image, x, top, x, bottom, grid)
            PixelText.draw(text, into: &image, x: x - PixelText.width(text, scale: scale) / 2, y: bottom + 8)
        }
        line(&image, left, bottom, right, bottom, axis)
        line(&image, left, top, left, bottom, axis)
        PixelText.draw(xLabel, into: &image, x: (left + right - PixelText.width(xLabel, scale: scale)) / 2, y: height - charHeight - 4)

        var legend = left
        for (i, s) in shown.enumerated() {
            let colour = Pictures.palette[i % Pictures.palette.count]
            for dy in 0..<charHeight { for dx in 0..<charHeight { image.set(x: legend + dx, y: 6 + dy, colour) } }
            legend = PixelText.draw(s.name, into: &image, x: legend + charHeight + 6, y: 6) + 18
        }
        // Points outside the y range are drawn at its edges; the plot area clips nothing else.
        func clampY(_ y: Double) -> Double { min(max(y, y0), y1) }
        for (i, s) in shown.enumerated() {
            let colour = Pictures.palette[i % Pictures.palette.count]
            let points = s.points.filter { $0.y.isFinite }.map { (px($0.x), py(clampY($0.y))) }
            for (a, b) in zip(points, points.dropFirst()) {
                line(&image, a.0, a.1, b.0, b.1, colour)
                line(&image, a.0, a.1 + 1, b.0, b.1 + 1, colour)
            }
            if s.marked || points.count == 1 {
                for p in points { for dy in -2...2 { for dx in -2...2 { image.set(x: p.0 + dx, y: p.1 + dy, colour) } } }
            }
        }
        return image
    }

    /// Round numbers (1, 2 or 5 times a power of ten apart) covering [lo, hi], about `target` of them.
    static func ticks(_ lo: Double, _ hi: Double, target: Int) -> [Double] {
        let raw = (hi - lo) / Double(max(target, 1))
        let power = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
        var out: [Double] = []
        var t = ceil(lo / step) * step
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    /// Tick labels with as many decimals as the spacing needs ("0.25", "1200", "1.5e-05").
    static func labels(_ ticks: [Double]) -> [String] {
        guard ticks.count > 1 else { return ticks.map { String(format: "%g", $0) } }
        let step = ticks[1] - ticks[0], largest = ticks.map(abs).max()!
        if largest >= 1e6 || (step < 1e-3 && largest < 1e-2) { return ticks.map { String(format: "%.2g", $0) } }
        let decimals = max(0, -Int(floor(log10(step) + 1e-9)))
        return ticks.map { String(format: "%.\(decimals)f", $0) }
    }

    /// A one-pixel line from (x0, y0) to (x1, y1) (Bresenham).
    static func line(_ image: inout PixelImage, _ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ colour: [UInt8]) {
        var (x, y) = (x0, y0)
        let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var error = dx + dy
        while true {
            image.set(x: x, y: y, colour)
            if x == x1 && y == y1 { return }
            let e2 = 2 * error
            if e2 >= dy { error += dy; x += sx }
            if e2 <= dx { error += dx; y += sy }
        }
    }
}
