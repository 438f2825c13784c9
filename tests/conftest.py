"""Suite-wide settings."""
import torch._dynamo

# Every compiled Pipeline adds an entry to the compile cache of augpipe's executor; past torch's limit (8) dynamo
# would silently run eager code, and the compiled == eager tests would pass without testing the compiler.
if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):  # older torch (a GPU image) may lack it
    torch._dynamo.config.fail_on_recompile_limit_hit = True
