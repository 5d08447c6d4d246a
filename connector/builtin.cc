#include "connector/registry.h"
namespace idsync { void RegisterBuiltinConnectors(ConnectorRegistry&) {} }
