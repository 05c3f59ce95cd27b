package jenkinsemu

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Languages of the emulated controller: the texts of Jenkins' own message
// bundles (core's hudson/model, hudson/slaves, jenkins/model and hudson
// Messages*.properties for ja and zh_TW; the localization-zh-cn plugin for
// zh_CN, which core does not ship). A key missing from a language falls
// back to English, as Jenkins' localizer does (the zh_CN plugin has no
// text for "Build #N is already in progress", core none in ja or zh_TW
// for a taken agent name). MessageFormat turns the bundles' doubled apostrophes
// around {0} into single ones.
const (
	msgWaitingForExecutor   = "Queue.WaitingForNextAvailableExecutor"
	msgWaitingForExecutorOn = "Queue.WaitingForNextAvailableExecutorOn"
	msgAllNodesOffline      = "Queue.AllNodesOffline"
	msgLabelHasNoNodes      = "Queue.LabelHasNoNodes"
	msgNodeOffline          = "Queue.NodeOffline"
	msgInQuietPeriod        = "Queue.InQuietPeriod"
	msgUnknown              = "Queue.Unknown"
	msgBuildInProgress      = "BlockedBecauseOfBuildInProgress.shortDescription"
	msgBuildInProgressETA   = "BlockedBecauseOfBuildInProgress.ETA"
	msgDisconnectedBy       = "SlaveComputer.DisconnectedBy"
	msgAgentExists          = "ComputerSet.SlaveAlreadyExists"
)

var english = &lang{tag: "en", msgs: map[string]string{
	msgWaitingForExecutor:   "Waiting for next available executor",
	msgWaitingForExecutorOn: "Waiting for next available executor on ‘{0}’",
	msgAllNodesOffline:      "All nodes of label ‘{0}’ are offline",
	msgLabelHasNoNodes:      "There are no nodes with the label ‘{0}’",
	// Cores since 2.4xx quote the node (‘{0}’ is offline); the emulator
	// answers like the older cores ferry must read too.
	msgNodeOffline:        "{0} is offline",
	msgInQuietPeriod:      "In the quiet period. Expires in {0}",
	msgUnknown:            "???",
	msgBuildInProgress:    "Build #{0} is already in progress{1}",
	msgBuildInProgressETA: " (ETA: {0})",
	msgDisconnectedBy:     "Disconnected by {0}{1}",
	msgAgentExists:        "Agent called ‘{0}’ already exists",
}}

// langs are the bundles by Java locale name.
var langs = map[string]*lang{
	"": english,
	"zh_CN": {tag: "zh_CN", msgs: map[string]string{
		msgWaitingForExecutor:   "等待下一个可用的执行器",
		msgWaitingForExecutorOn: "在 {0} 上等待下一个可用的执行器",
		msgAllNodesOffline:      "带有标签 ‘{0}’ 的所有节点都离线",
		msgLabelHasNoNodes:      "没有带有标签 ‘{0}’ 的节点",
		msgNodeOffline:          "{0} 已经离线",
		msgInQuietPeriod:        "处于静默期。截止 {0}",
		msgUnknown:              "未知",
		msgDisconnectedBy:       "被 {0}{1}断开连接",
		msgAgentExists:          "代理 ‘{0}’ 已经存在",
	}, units: map[string]string{
		"millisecond": "{0} 毫秒", "second": "{0} 秒", "minute": "{0} 分", "hour": "{0} 小时",
		"day": "{0} 天", "month": "{0} 月", "year": "{0} 年",
	}},
	"ja": {tag: "ja", msgs: map[string]string{
		msgWaitingForExecutor:   "利用可能な次のエグゼキューターを待っています。",
		msgWaitingForExecutorOn: "{0}で利用可能な次のエグゼキューターを待っています。",
		msgAllNodesOffline:      "ラベル '{0}' のすべてのノードはオフラインです。",
		msgNodeOffline:          "{0} はオフラインです。",
		msgInQuietPeriod:        "待機中です。あと{0}です。",
		msgBuildInProgress:      "ビルド #{0} は既に実行中です。{1}",
		msgBuildInProgressETA:   " (予定時間: {0})",
		msgDisconnectedBy:       "{0}がオフラインにしています。{1}",
	}, units: map[string]string{
		"millisecond": "{0} ms", "second": "{0} 秒", "minute": "{0} 分", "hour": "{0} 時間",
		"day": "{0} 日", "month": "{0} ヶ月", "year": "{0} 年",
	}},
	"zh_TW": {tag: "zh_TW", msgs: map[string]string{
		msgWaitingForExecutor:   "等候可用的執行程式",
		msgWaitingForExecutorOn: "等候 {0} 中的執行程式",
		msgAllNodesOffline:      "所有標籤為 '{0}' 的節點都離線了",
		msgNodeOffline:          "{0} 離線",
		msgInQuietPeriod:        "在靜候時間內，還要 {0}",
		msgBuildInProgress:      "建置 #{0} 已在執行中{1}",
		msgBuildInProgressETA:   " (預估時間: {0})",
		msgDisconnectedBy:       "由 {0} 中斷連線{1}",
	}, units: map[string]string{
		"millisecond": "{0} 毫秒", "second": "{0} 秒", "minute": "{0} 分", "hour": "{0} 小時",
		"day": "{0} 天", "month": "{0} 個月", "year": "{0} 年",
	}},
}

// lang is one message bundle.
type lang struct {
	tag   string
	msgs  map[string]string
	units map[string]string // Util.* time units; nil: English rules
}

// format renders key like MessageFormat with string arguments.
func (l *lang) format(key string, args ...string) string {
	p, ok := l.msgs[key]
	if !ok {
		p = english.msgs[key]
	}
	for i, a := range args {
		p = strings.ReplaceAll(p, "{"+strconv.Itoa(i)+"}", a)
	}
	return p
}

// lookupLang is the localizer's ResourceBundleHolder.get: the bundle of
// the locale, else of its language alone, else English. Unlike
// java.util.ResourceBundle it never falls back to the JVM's default
// locale, so a request for "en" gets English on a Chinese controller.
func lookupLang(locale string) *lang {
	for locale != "" {
		if l, ok := langs[locale]; ok {
			return l
		}
		i := strings.LastIndexByte(locale, '_')
		if i < 0 {
			break
		}
		locale = locale[:i]
	}
	return english
}

// javaLocale turns a language tag ("zh-CN", "en_us") into Java's locale
// name ("zh_CN", "en_US").
func javaLocale(tag string) string {
	lang, country, _ := strings.Cut(strings.ReplaceAll(strings.TrimSpace(tag), "-", "_"), "_")
	lang = strings.ToLower(lang)
	if country == "" {
		return lang
	}
	return lang + "_" + strings.ToUpper(country)
}

// preferredLocale is ServletRequest.getLocale() under Jetty: the
// Accept-Language entry of highest quality (the first of equals), or ""
// when the header names none.
func preferredLocale(header string) string {
	best, bestQ := "", 0.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(part, ";")
		tag = strings.TrimSpace(tag)
		if tag == "" || tag == "*" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				continue
			}
			q = f
		}
		if q > bestQ {
			best, bestQ = tag, q
		}
	}
	return javaLocale(best)
}

// localeConf is the controller's language setup; see SetLocale.
type localeConf struct {
	locale string // Java locale name; "" is English
	force  bool   // the Locale plugin's "ignore browser preference"
}

// requestLang is the bundle a request is answered in: its Accept-Language,
// else the controller's default locale; with the Locale plugin forcing a
// language, always that one.
func (s *Server) requestLang(r *http.Request) *lang {
	lc := s.localeConf()
	if !lc.force && r != nil {
		if l := preferredLocale(r.Header.Get("Accept-Language")); l != "" {
			return lookupLang(l)
		}
	}
	return lookupLang(lc.locale)
}

func (s *Server) localeConf() localeConf {
	s.localeMu.Lock()
	defer s.localeMu.Unlock()
	return s.locale
}

// SetLocale changes the controller's default locale (a Java locale name:
// "en", "zh_CN", "ja", "zh_TW"; others answer in English) and whether the
// Locale plugin forces it on every request ("Ignore browser preference and
// force this language to all users"), which also makes every answer carry
// X-Jenkins-Language. See Options.Locale.
func (s *Server) SetLocale(locale string, ignoreAcceptLanguage bool) {
	if locale == "en" {
		locale = ""
	}
	s.localeMu.Lock()
	defer s.localeMu.Unlock()
	s.locale = localeConf{locale: javaLocale(locale), force: ignoreAcceptLanguage}
}

// offlineCauseReason is Computer.getOfflineCauseReason for a UserCause:
// the localized "Disconnected by {0}{1}" with its fixed words removed by a
// regular expression anchored at the start — which removes nothing where
// the sentence starts with the user (zh_CN, ja, zh_TW). Cores since 2.483
// HTML-escape the result (IOfflineCause.getReason).
func offlineCauseReason(l *lang, user, msg string, escape bool) string {
	suffix := ""
	if msg != "" {
		suffix = " : " + msg
	}
	desc := l.format(msgDisconnectedBy, user, suffix)
	base := regexp.QuoteMeta(l.format(msgDisconnectedBy, "", ""))
	r := regexp.MustCompile(`^`+base+`[\w\W]* : `).ReplaceAllLiteralString(desc, "")
	r = regexp.MustCompile(`^`+base+`[\w\W]*`).ReplaceAllLiteralString(r, "")
	if escape {
		r = utilEscape(r)
	}
	return r
}

// utilEscape is hudson.Util.escape.
func utilEscape(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch r {
		case '\n':
			b.WriteString("<br>")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#039;")
		case ' ':
			if i+1 < len(s) && s[i+1] == ' ' {
				b.WriteString("&nbsp;")
			} else {
				b.WriteByte(' ')
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// versionAtLeast compares dotted Jenkins versions numerically ("2.462.3"
// ≥ "2.308").
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x > y
		}
	}
	return true
}
