// PLACEHOLDER while issue 12 is built: replaced by the migrate commands.
#include "installer/cli.h"

namespace installer {

std::vector<Command> add_migrate_commands(CLI::App&, const EnvFn&) { return {}; }

}  // namespace installer
