// PLACEHOLDER while issue 12 is built: replaced by the intake commands.
#include "installer/cli.h"

namespace installer {

std::vector<Command> add_intake_commands(CLI::App&, const EnvFn&) { return {}; }

}  // namespace installer
