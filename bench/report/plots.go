package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plots are PNGs of plotW x plotH (at gonum's default 96 dpi for PNG).
const (
	plotW = 8 * vg.Inch
	plotH = 5 * vg.Inch
)

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Title.TextStyle.Font.Size = vg.Points(14)
	p.X.Label.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.TextStyle.Font.Size = vg.Points(12)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// plotHitRatio: L1 hit ratio (%) against L1MaxBytes on a log2 axis, one
// line per Zipf exponent.
func plotHitRatio(dir string, series []hitSeries, keys, valueSize int) error {
	p := newPlot(fmt.Sprintf("L1 hit ratio vs L1 size (Zipf over %d keys of %d B, l1 package simulation)", keys, valueSize),
		"L1MaxBytes (MiB, log scale)", "L1 hit ratio (%)")
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for i, s := range series {
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			xys[j].X = float64(pt.MaxBytes) / (1 << 20)
			xys[j].Y = 100 * pt.HitRatio
			if i == 0 {
				ticks = append(ticks, plot.Tick{Value: xys[j].X, Label: trimFloat(xys[j].X)})
			}
		}
		l, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color, l.Width = plotutil.Color(i), vg.Points(2)
		sc.Color, sc.Shape, sc.Radius = plotutil.Color(i), plotutil.Shape(i), vg.Points(4)
		p.Add(l, sc)
		p.Legend.Add(fmt.Sprintf("Zipf s=%.2f", s.S), l, sc)
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min, p.Y.Max = 0, 100
	p.Y.Tick.Marker = stepTicks(10)
	p.Legend.Top = false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(10), vg.Points(10)
	return p.Save(plotW, plotH, filepath.Join(dir, "hit-ratio.png"))
}

// plotLagCDF: fraction of evictions done within x ms of the write's ack.
func plotLagCDF(dir string, lags []float64, p50, p99 float64) error {
	p := newPlot(fmt.Sprintf("ack→evict lag CDF (%d evictions on 2 other nodes, DynamoDB Local)", len(lags)),
		"lag from write ack on node A to L1 eviction on node B/C (ms)", "fraction of evictions (≤ x)")
	xys := make(plotter.XYs, len(lags))
	for i, v := range lags { // lags are sorted
		xys[i].X = v
		xys[i].Y = float64(i+1) / float64(len(lags))
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.LineStyle.Width = vg.Points(2)
	l.LineStyle.Color = plotutil.Color(0)
	p.Add(l)
	p.Legend.Add("CDF", l)
	for i, q := range []struct {
		v    float64
		name string
	}{{p50, "p50"}, {p99, "p99"}} {
		v, err := plotter.NewLine(plotter.XYs{{X: q.v, Y: 0}, {X: q.v, Y: 1}})
		if err != nil {
			return err
		}
		v.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		v.LineStyle.Color = plotutil.Color(i + 1)
		p.Add(v)
		p.Legend.Add(fmt.Sprintf("%s = %.1f ms", q.name, q.v), v)
	}
	// The x axis stops at twice the p99 so that the body of the curve is
	// readable; the caption gives the maximum.
	p.Y.Min, p.Y.Max = 0, 1
	p.Y.Tick.Marker = stepTicks(0.1)
	p.X.Min, p.X.Max = 0, math.Ceil(2*p99/10)*10
	p.Legend.Top = false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(10), vg.Points(10)
	p.Legend.Add(fmt.Sprintf("max = %.1f ms (axis cut at 2× p99)", lags[len(lags)-1]))
	return p.Save(plotW, plotH, filepath.Join(dir, "lag-cdf.png"))
}

// barGroup is one bar per group (an x category), for one legend entry.
type barGroup struct {
	Label  string
	Values []float64
}

// plotRatioBars draws grouped bars of ratios with a reference line at 1.
func plotRatioBars(file, title, ylabel string, categories []string, groups []barGroup) error {
	p := newPlot(title, "", ylabel)
	w := vg.Points(float64(min(90/len(groups), 40)))
	ymax := 1.0
	for i, g := range groups {
		bars, err := plotter.NewBarChart(plotter.Values(g.Values), w)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = w * vg.Length(float64(i)-float64(len(groups)-1)/2)
		p.Add(bars)
		p.Legend.Add(g.Label, bars)
		lbl := plotter.XYLabels{XYs: make(plotter.XYs, len(g.Values)), Labels: make([]string, len(g.Values))}
		for j, v := range g.Values {
			ymax = math.Max(ymax, v)
			lbl.XYs[j] = plotter.XY{X: float64(j), Y: v}
			lbl.Labels[j] = fmt.Sprintf("%.2f", v)
		}
		labels, err := plotter.NewLabels(lbl)
		if err != nil {
			return err
		}
		for k := range labels.TextStyle {
			labels.TextStyle[k].XAlign = draw.XCenter
			labels.TextStyle[k].Font.Size = vg.Points(9)
		}
		labels.Offset = vg.Point{X: bars.Offset, Y: vg.Points(3)}
		p.Add(labels)
	}
	one, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(categories)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	one.LineStyle.Color = color.Black
	one.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(one)
	p.Legend.Add("1.0 = same cost", one)
	p.NominalX(categories...)
	p.Y.Min, p.Y.Max = 0, ymax*1.45
	p.Y.Tick.Marker = stepTicks(niceStep(ymax * 1.45 / 8))
	p.Legend.Left = true
	return p.Save(plotW, plotH, file)
}

// plotReadUnits: read units per 1,000 Gets against the L1 hit ratio, measured
// points per value size and the model line (1 - h) * 1000 * units per read.
func plotReadUnits(dir string, series []rcuSeries) error {
	p := newPlot("DynamoDB read units per 1,000 Gets vs L1 hit ratio (strongly consistent reads)",
		"L1 hit ratio (%)", "read capacity units per 1,000 Gets")
	for i, s := range series {
		pts := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			pts[j].X, pts[j].Y = 100*pt.HitRatio, pt.UnitsPer1k
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color = plotutil.Color(i)
		sc.GlyphStyle.Shape = draw.CircleGlyph{}
		sc.GlyphStyle.Radius = vg.Points(4)
		p.Add(sc)
		how := "measured"
		if !s.Measured {
			how = "counted reads × units per read"
		}
		p.Legend.Add(fmt.Sprintf("%s values (%s)", bytesLabel(s.ValueSize), how), sc)
		upr := s.UnitsPerRead
		f := plotter.NewFunction(func(h float64) float64 { return (1 - h/100) * 1000 * upr })
		f.Color = plotutil.Color(i)
		f.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(f)
		p.Legend.Add(fmt.Sprintf("model: (1 − h) × 1000 × %.0f", upr), f)
	}
	p.X.Min, p.X.Max = 0, 100
	p.Y.Min = 0
	return p.Save(plotW, plotH, filepath.Join(dir, "read-units.png"))
}

func bytesLabel(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// stepTicks labels the axis every step.
type stepTicks float64

func (s stepTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for i := math.Ceil(lo / float64(s)); i*float64(s) <= hi+1e-9; i++ {
		v := i * float64(s)
		ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 6, 64)})
	}
	return ts
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
