-- :checkhealth tandem: the server binary, that it starts, the model, GPU offload.

local M = {}

function M.check()
  local health = vim.health
  health.start("tandem-ls")
  local cfg = vim.lsp.config.tandem or {}
  local cmd = cfg.cmd
  if type(cmd) ~= "table" then
    cmd = { "tandem-ls" }
  end
  local exe = vim.fn.exepath(cmd[1])
  if exe == "" then
    health.error("server not found: " .. cmd[1], {
      "pip install tandem-ls (in the Python environment on your PATH)",
      'or set cmd = { "/path/to/python", "-m", "tandem" } in require("tandem").setup()',
    })
    return
  end
  health.ok("server command: " .. table.concat(cmd, " ") .. " (" .. exe .. ")")

  local settings = vim.json.encode((cfg.settings or {}).tandem or vim.empty_dict())
  local argv = vim.list_extend(vim.deepcopy(cmd), { "doctor", "--json", "--settings", settings })
  local done = vim.system(argv, { text = true }):wait(60000)
  local ok, found = pcall(vim.json.decode, done.stdout or "")
  if not ok or type(found) ~= "table" then
    health.error("the server does not start: " .. (done.stderr or ""):sub(1, 500))
    return
  end
  health.ok(("server starts: tandem-ls %s on Python %s"):format(found.tandem, found.python))

  local llama = found.llama_cpp
  if not llama.installed then
    health.error("llama-cpp-python is not installed: " .. tostring(llama.error))
  elseif llama.gpu_offload then
    health.ok("llama-cpp-python " .. llama.version .. ": GPU offload on")
  else
    health.info("llama-cpp-python " .. llama.version .. ": GPU offload off (CPU-only build)."
      .. ' For a GPU, reinstall it with CMAKE_ARGS="-DGGML_CUDA=on" (see the README).')
  end

  local model = found.model
  if model.found then
    local fits = model.fits_in_ram == false and ", larger than the free RAM" or ""
    local report = model.fits_in_ram == false and health.warn or health.ok
    report(("model found: %s (%.0f MB, from %s%s)"):format(
      model.path, model.size / 1e6, model.source, fits))
  else
    health.warn("model not found: " .. (model.message or ""), {
      'set settings = { ["local"] = { modelPath = "/path/to/model.gguf" } }',
      "or the environment variable TANDEM_MODEL",
    })
  end
  health.info("offline: " .. (found.offline and "on" or "off"))

  local status = require("tandem").status
  if status and status.summary then
    health.info("running server: " .. table.concat(status.summary, "; "))
  end
end

return M
