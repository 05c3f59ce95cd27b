// Package chaos is ferry's fault harness: it runs the built `ferry serve`
// binary — real processes, not the app inside the test — against a real
// redis-server and the Jenkins emulator, hurts them the way production
// does (SIGKILL, SIGSTOP, slow answers), and checks that every accepted
// webhook became exactly one build.
//
//	deliveries (signed pushes, round-robin, redelivered when unanswered)
//	    → ferry-0 … ferry-N (`ferry serve --consumer ferry-i`, logs to files)
//	    → redis-server (test/redisserver)
//	    → Proxy (holds the answers to buildWithParameters)
//	    → Jenkins emulator (test/jenkinsemu, builds end at once)
//
// A test starts a Cluster, sends, breaks something, and settles:
//
//	c := chaos.Start(t, chaos.Options{TriggerDelay: 300 * time.Millisecond})
//	go c.Send(ctx, 800)
//	c.Proxy.WaitHeld(ctx, 3) // Jenkins queued builds ferry has not heard of
//	c.Ferry(0).Kill()        // SIGKILL
//	c.Ferry(0).Start()       // same name, address and configuration
//	rep := c.WaitBuiltOnce(2 * time.Minute)
//
// WaitBuiltOnce waits until ferry's queue has handed out and acknowledged
// every event (so no further trigger can come), then fails the test for
// each event built twice, accepted but not built, or built from nowhere.
// The ferry binary is built once per test binary (FERRY_CHAOS_BINARY
// names a prebuilt one); a package using the harness calls
// os.Exit(chaos.Main(m)) from TestMain so the build is removed.
//
// TestProvisionerFaultsOnTheBed runs three processes whose provisioners
// share a Lease on the test bed's API server (FERRY_TESTBED_ENV), plays the
// agents, and kills the leader, freezes it past its lease (SIGSTOP) and
// restarts Redis mid-burst, checking after each fault that every accepted
// delivery became one build, nothing leaked, and no replica started an act
// outside its own term (read from the processes' debug logs: "leading" and
// "acting" with fenced_at).
//
// TestPromoterFaultsOnTheBed SIGKILLs the promoter's leader mid-rollout
// and at an approval gate (each promotion ends once, each environment's
// Deployment changes once, the approval given after the hand-off takes
// effect); TestJenkinsRestartOnTheBed restarts the Jenkins emulator under
// running builds (each lost build re-run exactly once); and
// TestAPIServerRestartOnTheBed runs a kube-apiserver of its own
// (StartAPIServer) on the bed's etcd, points ferry at it and SIGKILLs and
// restarts it mid-burst (make chaos only).
//
// Environment: FERRY_CHAOS=full runs the long rounds (make chaos);
// FERRY_CHAOS_REPORT names a file that Summary appends each run's figures
// to; FERRY_CHAOS_KEEP_LOGS names a directory the processes' logs are
// copied to; FERRY_CHAOS_NO_CONSUMER_FLAG=1 starts ferry without --consumer, to
// run the suite against a ferry older than that flag.
//
// Under -short the tests skip: they build a binary and need redis-server
// (and the provisioner faults the test bed).
package chaos
