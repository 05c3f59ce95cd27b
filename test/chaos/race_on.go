//go:build race

package chaos

// raceBuild: the tests run with -race, so ferry is built with it too; its
// packages are then already compiled that way, and a data race in a
// process under faults fails the test.
const raceBuild = true
