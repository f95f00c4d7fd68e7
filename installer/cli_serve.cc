// PLACEHOLDER while issue 12 is built: replaced by the serve commands.
#include "installer/cli.h"

namespace installer {

std::vector<Command> add_serve_commands(CLI::App&, const EnvFn&) { return {}; }

}  // namespace installer
