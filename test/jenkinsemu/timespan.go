package jenkinsemu

import (
	"strconv"
	"time"
)

// timeSpanString renders a duration like hudson.Util.getTimeSpanString, which
// Jenkins uses in queue reasons ("In the quiet period. Expires in 4.9 sec",
// "(ETA: 12 sec)"): the two largest units when the larger is below 10, else
// only the larger; seconds with one decimal below 10 s, two below 1 s.
func timeSpanString(d time.Duration) string {
	ms := d.Milliseconds()
	const (
		second = 1000
		minute = 60 * second
		hour   = 60 * minute
		day    = 24 * hour
		month  = 30 * day
		year   = 365 * day
	)
	years := ms / year
	ms %= year
	months := ms / month
	ms %= month
	days := ms / day
	ms %= day
	hours := ms / hour
	ms %= hour
	minutes := ms / minute
	ms %= minute
	seconds := ms / second
	millis := ms % second

	two := func(big int64, bigLabel string, _ int64, smallLabel string) string {
		if big < 10 {
			return bigLabel + " " + smallLabel
		}
		return bigLabel
	}
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case years > 0:
		return two(years, plural(years, "yr"), months, plural(months, "mo"))
	case months > 0:
		return two(months, plural(months, "mo"), days, plural(days, "day"))
	case days > 0:
		return two(days, plural(days, "day"), hours, strconv.FormatInt(hours, 10)+" hr")
	case hours > 0:
		return two(hours, strconv.FormatInt(hours, 10)+" hr", minutes, strconv.FormatInt(minutes, 10)+" min")
	case minutes > 0:
		return two(minutes, strconv.FormatInt(minutes, 10)+" min", seconds, strconv.FormatInt(seconds, 10)+" sec")
	case seconds >= 10:
		return strconv.FormatInt(seconds, 10) + " sec"
	case seconds >= 1:
		return strconv.FormatFloat(float64(seconds)+float64(millis/100)/10, 'f', -1, 32) + " sec"
	case millis >= 100:
		return strconv.FormatFloat(float64(millis/10)/100, 'f', -1, 32) + " sec"
	default:
		return strconv.FormatInt(millis, 10) + " ms"
	}
}
