package jenkinsemu

import (
	"strconv"
	"strings"
	"time"
)

// timeSpanString renders a duration like hudson.Util.getTimeSpanString, which
// Jenkins uses in queue reasons ("In the quiet period. Expires in 4.9 sec",
// "(ETA: 12 sec)"): the two largest units when the larger is below 10, else
// only the larger; seconds with one decimal below 10 s, two below 1 s.
func timeSpanString(d time.Duration) string { return timeSpanIn(d, english) }

// timeSpanIn is timeSpanString with the units of l (Util.second = "{0} 秒"
// in zh_CN).
func timeSpanIn(d time.Duration, l *lang) string {
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
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	switch {
	case years > 0:
		return two(years, l.unit("year", years, n(years)), months, l.unit("month", months, n(months)))
	case months > 0:
		return two(months, l.unit("month", months, n(months)), days, l.unit("day", days, n(days)))
	case days > 0:
		return two(days, l.unit("day", days, n(days)), hours, l.unit("hour", hours, n(hours)))
	case hours > 0:
		return two(hours, l.unit("hour", hours, n(hours)), minutes, l.unit("minute", minutes, n(minutes)))
	case minutes > 0:
		return two(minutes, l.unit("minute", minutes, n(minutes)), seconds, l.unit("second", seconds, n(seconds)))
	case seconds >= 10:
		return l.unit("second", seconds, n(seconds))
	case seconds >= 1:
		return l.unit("second", seconds, strconv.FormatFloat(float64(seconds)+float64(millis/100)/10, 'f', -1, 32))
	case millis >= 100:
		return l.unit("second", 0, strconv.FormatFloat(float64(millis/10)/100, 'f', -1, 32))
	default:
		return l.unit("millisecond", millis, n(millis))
	}
}

// unit renders a quantity of one time unit: English abbreviations (with
// the plurals yrs, mos, days), else the language's Util.* pattern.
func (l *lang) unit(name string, count int64, num string) string {
	if p, ok := l.units[name]; ok {
		return strings.ReplaceAll(p, "{0}", num)
	}
	abbr := map[string]string{"year": "yr", "month": "mo", "day": "day", "hour": "hr",
		"minute": "min", "second": "sec", "millisecond": "ms"}[name]
	if count != 1 && (name == "year" || name == "month" || name == "day") {
		abbr += "s"
	}
	return num + " " + abbr
}
