package jobs

import "github.com/ehsaniara/joblet/internal/config"

// checkEnv refuses an environment whose meaning would depend on the program
// reading it (config.CheckJobEnv, which rnx applies too). A request's PATH,
// HOME or LANG replaces the default of that name (sandbox.JobEnv): a job may
// need its own PATH, and inside its sandbox nothing rides on these values.
func checkEnv(env []string) error { return config.CheckJobEnv(env) }
