// Two small charts drawn as inline SVG (no chart library): a line over time (storage) and bars per day (pulls). Colours come from the stylesheet (the CSP allows no inline styles); every point has a tooltip and the figures are in a table underneath for those who would rather read.
import { html, nothing, svg } from 'lit'
import { formatBytes, formatDate } from '../format.js'

const WIDTH = 720
const HEIGHT = 220
const LEFT = 72
const RIGHT = 12
const TOP = 12
const BOTTOM = 28
const PLOT_W = WIDTH - LEFT - RIGHT
const PLOT_H = HEIGHT - TOP - BOTTOM

/** A round top for the y axis and its step: 1, 2 or 5 times a power of ten for counts (at least 1), a power of two of a binary unit for bytes. */
export function niceScale(max: number, ticks: number, base: 10 | 1024): { top: number; step: number } {
  if (max <= 0) return { top: ticks, step: 1 }
  const raw = max / ticks
  let step: number
  if (base === 1024) {
    let power = 1
    while (power * 1024 <= raw) power *= 1024
    let unit = 1
    while (unit * power < raw && unit < 1024) unit *= 2
    step = unit * power
  } else {
    const magnitude = 10 ** Math.floor(Math.log10(raw))
    step = Math.max(1, ([1, 2, 5, 10].map((factor) => factor * magnitude).find((candidate) => candidate >= raw) ?? 10 * magnitude))
  }
  return { top: Math.ceil(max / step) * step, step }
}

function yTicks(top: number, step: number, label: (value: number) => string): unknown {
  const lines = []
  for (let value = 0, i = 0; value <= top + step / 2 && i < 20; value += step, i++) {
    const y = TOP + PLOT_H - (value / top) * PLOT_H
    lines.push(svg`<line class="grid" x1=${LEFT} x2=${WIDTH - RIGHT} y1=${y} y2=${y}></line>
      <text class="tick" x=${LEFT - 6} y=${y + 4} text-anchor="end">${label(value)}</text>`)
  }
  return lines
}

export interface LinePoint {
  /** ISO 8601 time. */
  at: string
  value: number
}

/** A line of values over time (e.g. bytes on disk): x by time, y from 0; a single point is a dot. */
export function lineChart(options: { title: string; points: readonly LinePoint[]; format?: (value: number) => string; id: string }): unknown {
  const { points, title, id } = options
  const format = options.format ?? formatBytes
  if (points.length === 0) return html`<p class="muted">No samples yet.</p>`
  const times = points.map((point) => Date.parse(point.at))
  const first = Math.min(...times)
  const last = Math.max(...times)
  const span = Math.max(1, last - first)
  const { top, step } = niceScale(Math.max(...points.map((point) => point.value)), 4, 1024)
  const x = (at: number): number => (points.length === 1 ? LEFT + PLOT_W / 2 : LEFT + ((at - first) / span) * PLOT_W)
  const y = (value: number): number => TOP + PLOT_H - (value / top) * PLOT_H
  const path = points.map((point, i) => `${i === 0 ? 'M' : 'L'}${x(times[i] ?? first).toFixed(1)},${y(point.value).toFixed(1)}`).join(' ')
  const firstPoint = points[0] as LinePoint
  const lastPoint = points[points.length - 1] as LinePoint
  const summary = `${points.length} samples from ${formatDate(firstPoint.at)} to ${formatDate(lastPoint.at)}: ${format(firstPoint.value)} then, ${format(lastPoint.value)} now.`
  return html`<figure class="chart" id=${id}>
    <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${id}-title ${id}-desc" data-points=${points.length}>
      <title id="${id}-title">${title}</title>
      <desc id="${id}-desc">${summary}</desc>
      ${yTicks(top, step, format)}
      <line class="axis" x1=${LEFT} x2=${WIDTH - RIGHT} y1=${TOP + PLOT_H} y2=${TOP + PLOT_H}></line>
      <text class="tick" x=${LEFT} y=${HEIGHT - 8} text-anchor="start">${formatDate(firstPoint.at)}</text>
      ${points.length > 1 ? svg`<text class="tick" x=${WIDTH - RIGHT} y=${HEIGHT - 8} text-anchor="end">${formatDate(lastPoint.at)}</text>` : nothing}
      ${points.length > 1 ? svg`<path class="line" d=${path}></path>` : nothing}
      ${points.map((point, i) => svg`<circle class="dot" cx=${x(times[i] ?? first)} cy=${y(point.value)} r="3.5" data-value=${point.value}><title>${formatDate(point.at)}: ${format(point.value)}</title></circle>`)}
    </svg>
    <figcaption class="muted">${summary}</figcaption>
  </figure>`
}

export interface Bar {
  /** YYYY-MM-DD */
  day: string
  value: number
}

/** One bar per day (e.g. pulls), labelled every week; days without any are empty, not missing. */
export function barChart(options: { title: string; bars: readonly Bar[]; unit: [string, string]; id: string }): unknown {
  const { bars, title, id, unit } = options
  if (bars.length === 0) return nothing
  const total = bars.reduce((sum, bar) => sum + bar.value, 0)
  const { top, step } = niceScale(Math.max(...bars.map((bar) => bar.value)), 4, 10)
  const slot = PLOT_W / bars.length
  const width = Math.max(1, slot * 0.7)
  const words = (count: number): string => `${count} ${count === 1 ? unit[0] : unit[1]}`
  const firstBar = bars[0] as Bar
  const lastBar = bars[bars.length - 1] as Bar
  const summary = `${words(total)} in the ${bars.length} days from ${firstBar.day} to ${lastBar.day}.`
  return html`<figure class="chart" id=${id}>
    <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${id}-title ${id}-desc" data-total=${total}>
      <title id="${id}-title">${title}</title>
      <desc id="${id}-desc">${summary}</desc>
      ${yTicks(top, step, (value) => String(value))}
      <line class="axis" x1=${LEFT} x2=${WIDTH - RIGHT} y1=${TOP + PLOT_H} y2=${TOP + PLOT_H}></line>
      ${bars.map((bar, i) => {
        const height = (bar.value / top) * PLOT_H
        const left = LEFT + i * slot + (slot - width) / 2
        const label = (bars.length - 1 - i) % 7 === 0
        return svg`<rect class="bar" x=${left} y=${TOP + PLOT_H - height} width=${width} height=${height} data-day=${bar.day} data-value=${bar.value}><title>${bar.day}: ${words(bar.value)}</title></rect>
          ${label ? svg`<text class="tick" x=${left + width / 2} y=${HEIGHT - 8} text-anchor="middle">${bar.day.slice(5)}</text>` : nothing}`
      })}
    </svg>
    <figcaption class="muted">${summary}</figcaption>
  </figure>`
}
