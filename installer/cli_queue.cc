// PLACEHOLDER while issue 12 is built: replaced by the queue commands.
#include "installer/cli.h"

namespace installer {

std::vector<Command> add_queue_commands(CLI::App&, const EnvFn&) { return {}; }

}  // namespace installer
