// MARK: - Statistics

/// Medians and percentiles over small samples.
enum Statistics {
    /// The median of `values` (the mean of the middle two for an even count); NaN when empty.
    static func median(_ values: [Double]) -> Double {
        let finite = values.filter(\.isFinite).sorted()
        guard !finite.isEmpty else { return .nan }
        let middle = finite.count / 2
        return finite.count % 2 == 1 ? finite[middle] : (finite[middle - 1] + finite[middle]) / 2
    }

    /// The `percentile` (0...100) of already sorted `values`, nearest-rank; 0 when empty.
    static func percentile(_ percentile: Double, ofSorted values: [UInt64]) -> UInt64 {
        guard !values.isEmpty else { return 0 }
        let rank = Int((percentile / 100 * Double(values.count)).rounded(.up))
        return values[min(max(rank, 1), values.count) - 1]
    }
}
