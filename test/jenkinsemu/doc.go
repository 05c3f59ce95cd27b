// Package jenkinsemu is a REST-faithful emulator of a Jenkins controller for
// ferry's tests: no real Jenkins can run in the test bed, so ferry's Jenkins
// client, dispatcher and provisioner talk to this instead. It follows
// Jenkins core's REST API (hudson.model.Api, Queue, Computer,
// ParameterizedJobMixIn) and what gojenkins v1.1.0 expects of it; each
// handler's comment says what real Jenkins does.
//
// # Emulated
//
//   - Security: basic auth with user:API-token (crumb-exempt) or
//     user:password (gets a session cookie; POSTs need a crumb bound to that
//     session); wrong credentials → 401 "Invalid password/token for user:";
//     anonymous → 403 with X-You-Are-Authenticated-As: anonymous (also for
//     /crumbIssuer); POST without a valid crumb → 403 "No valid crumb was
//     included in the request"; read-only users → 403 "… is missing the …
//     permission". Headers X-Jenkins, X-Hudson, X-Jenkins-Session; JSON as
//     "application/json;charset=utf-8" with "_class" on every object.
//   - ?tree= is honoured (Stapler's TreePruner: only named properties plus
//     _class, ranges {M,N}); ?depth= ≥ 1 shows nested executors, which
//     depth 0 prunes to their class.
//   - Jobs, in folders too (/job/a/job/b/): GET api/json (builds newest
//     first, at most 100; allBuilds only when a tree names it; lastBuild &
//     co; nextBuildNumber; inQueue; queueItem; property[] with
//     parameterDefinitions), permalinks, POST build / buildWithParameters
//     (201 + Location …/queue/item/ID/; merge of identical live items into
//     the existing one, answered by buildWithParameters 303 with the
//     existing item's Location since 2.308, 201 before and by build;
//     undeclared parameters dropped; defaults filled; choice validation;
//     "delay"; a disabled job (JobSpec.Disabled) answers 409, a job
//     without parameters 400 to buildWithParameters since 2.524, a 500
//     Oops page before), POST NUMBER/stop. Answers that changed across
//     cores follow Options.Version.
//   - Queue: /queue/api/json, /queue/item/ID/api/json (Waiting, Blocked,
//     Buildable and Left items with Jenkins' _class, why, stuck, params,
//     actions, executable / cancelled), left items expiring after
//     LeftItemTTL (then 404), POST /queue/cancelItem (204 / 404 / 422).
//     The why sentences follow BuildableItem.getCauseOfBlockage() exactly —
//     including the cases where the label does NOT appear (no agents at all;
//     a single node with the label: its node name appears instead).
//   - Nodes: POST /computer/doCreateItem (serialized, optional per-create
//     delay, name checks, 302), GET /computer/api/json, /computer/NAME/
//     api/json (built-in node "Built-In Node" at /computer/(built-in)/),
//     jenkins-agent.jnlp / slave-agent.jnlp with the HMAC secret, POST
//     doDelete (running builds ABORTED), POST toggleOffline (toggles;
//     Computer.DISCONNECT to take offline, CONNECT to bring back) and
//     changeOfflineCause (always offline; DISCONNECT), both with
//     offlineMessage and a 302 to the computer. A temporarily-offline node
//     keeps its running build and agent but is offered no new item;
//     temporarilyOffline, offline, offlineCause (UserCause) and
//     offlineCauseReason (the message) show it, absoluteRemotePath whether
//     the agent is still connected.
//   - Scheduling: label expressions (&&, ||, !, ->, <->, parentheses),
//     NORMAL/EXCLUSIVE modes, executors, online state; agents come online
//     only through ConnectAgent with the right secret; DisconnectAgent makes
//     their builds hang. Freestyle-like jobs wait for a node with their own
//     queue item; Pipeline jobs (JobSpec.Pipeline) start at once on a
//     flyweight executor and wait for the node through a second,
//     parameterless placeholder item.
//   - Languages: queue reasons (why), offline causes and the taken-name
//     error are worded in the request's language as Jenkins words them —
//     the preferred Accept-Language entry, else Options.Locale (the JVM's
//     default locale) — from Jenkins' own texts for English, zh_CN (the
//     localization-zh-cn plugin), ja and zh_TW, with the localizer's
//     fallback to English for missing texts. offlineCauseReason keeps the
//     localized "Disconnected by" sentence where Jenkins' prefix-stripping
//     regular expression fails (zh_CN, ja, zh_TW). Options.
//     IgnoreAcceptLanguage (or SetLocale) acts as the Locale plugin forcing
//     one language: every answer in Options.Locale, with
//     X-Jenkins-Language.
//   - Failures for tests: SetDown(Refuse) closes the listener and every
//     connection, SetDown(Unavailable) answers 503, SetLatency slows every
//     answer; Calls counts requests per route template. Restart is the
//     controller killed and started again with JENKINS_HOME kept: the
//     queue and running builds are lost, jobs, finished builds and nodes
//     kept, X-Jenkins-Session new, agents offline until they connect.
//
// # Not emulated
//
// Builds do nothing (no workspace, console log, artifacts, SCM, test
// reports); no job configuration over REST (config.xml, createItem,
// enable/disable: JobSpec.Disabled and UpdateJob stand for them);
// no clouds or NodeProvisioner; no retention strategies (every node
// behaves as RetentionStrategy$Always), no launchSlaveAgent for SSH launchers; no real remoting or WebSocket
// endpoint (ConnectAgent stands for the handshake); no views, users,
// credentials, plugins, CLI; no build authorization tokens; no queue
// sorters or consistent-hash load balancing (the first free node by name
// wins); freestyle agent loss (a freestyle build would fail at once).
//
// # Where Jenkins differs from what clients often assume
//
//   - A trigger identical to a live item is answered with the existing
//     item's Location (303 since 2.308, 201 before), not with an error or
//     an empty answer; gojenkins' BuildJob returns (0, nil) only because
//     it refuses to trigger whenever the job has anything queued (it
//     checks inQueue first).
//   - A disabled job is refused with 409, not a redirect; a job without
//     parameters makes buildWithParameters fail with 400, or on cores
//     before 2.524 with a 500 whose Oops page names no exception (unless
//     Options.ShowStackTrace), indistinguishable from Jenkins failing
//     unless the job is looked up.
//   - The label is in why only in some states (see whyLocked): not during
//     the quiet period, not when no agent exists at all, and replaced by the
//     node's name when exactly one node has the label.
//   - A Pipeline's own queue item never waits for the label; the node block
//     does, as a separate item without parameters whose task url is the
//     run's URL relative to the root.
//   - Crumbs are bound to the HTTP session; API tokens need none.
//   - Queue item urls are relative ("queue/item/7/"); build and job urls are
//     absolute; empty path segments are ignored ("/job/app//1/" works).
//
// Timed behaviour reads Options.Clock when something is observed, so tests
// can use a fake clock, and the state never depends on polling frequency.
package jenkinsemu
