package promote

// VerifyJobName exposes the verification Job's name to the tests.
var VerifyJobName = verifyJobName
