-- tandem-ls for Neovim 0.11+: starts the server, ghost text, commands, statusline.
--
--   require("tandem").setup({
--     cmd = { "tandem-ls" },          -- or { "/path/to/venv/bin/python", "-m", "tandem" }
--     settings = { ["local"] = { modelPath = "~/models/qwen2.5-coder-1.5b.gguf" } },
--     ghost = { enabled = true, debounce_ms = 150, accept = "<Tab>" },
--   })
--
-- Commands: :TandemStatus, :TandemOffline on|off|toggle. Statusline:
-- require("tandem").statusline(). Health: :checkhealth tandem.

local M = {}

M.defaults = {
  cmd = nil, ---@type string[]? the server command; nil: lsp/tandem.lua's "tandem-ls"
  filetypes = nil, ---@type string[]? nil: lsp/tandem.lua's list
  settings = {}, ---@type table the "tandem" settings section
  ghost = {
    enabled = true,
    debounce_ms = 150, -- idle time in insert mode before asking for a completion
    accept = "<Tab>", -- insert-mode key that accepts the ghost text (false: none)
  },
}

M.config = vim.deepcopy(M.defaults)

---@type table? the latest status the server sent ($/tandem/status)
M.status = nil

local function client(buf)
  return vim.lsp.get_clients({ name = "tandem", bufnr = buf })[1]
    or vim.lsp.get_clients({ name = "tandem" })[1]
end

local function on_status(_, result)
  M.status = result
  vim.cmd.redrawstatus({ bang = true })
end

--- A short state for the statusline: "tandem: ready", "tandem: offline", ...
function M.statusline()
  local s = M.status
  if not s then
    return client(0) and "tandem: starting" or ""
  end
  local state = s.model and s.model.state or "?"
  local where = s.backend == "llama_cpp" and "local" or s.backend
  if s.offline then
    where = where .. ", offline"
  end
  local gpu = s.model and s.model.gpu_offload and " GPU" or ""
  return ("tandem: %s %s%s"):format(where, state, gpu)
end

--- Run a server command; `callback(result)` gets its result.
function M.execute(command, arguments, callback)
  local c = client(0)
  if not c then
    vim.notify("tandem: the server is not running for this buffer", vim.log.levels.WARN)
    return
  end
  c:request("workspace/executeCommand", { command = command, arguments = arguments },
    function(err, result)
      if err then
        vim.notify("tandem: " .. command .. " failed: " .. err.message, vim.log.levels.ERROR)
      elseif callback then
        callback(result)
      end
    end, 0)
end

--- :TandemStatus: the server's own summary.
function M.show_status()
  M.execute("tandem.status", nil, function(result)
    M.status = result
    vim.notify(table.concat(result.summary, "\n"), vim.log.levels.INFO)
  end)
end

--- :TandemOffline on|off|toggle: changes the setting for this session.
function M.set_offline(arg)
  local c = client(0)
  if not c then
    vim.notify("tandem: the server is not running", vim.log.levels.WARN)
    return
  end
  c.settings.tandem = c.settings.tandem or {}
  local now = c.settings.tandem.offline == true
  local value = (arg == "on") or (arg == "toggle" and not now) or (arg == "" and not now)
  c.settings.tandem.offline = value
  -- The server pulls the section again (workspace/configuration).
  c:notify("workspace/didChangeConfiguration", { settings = c.settings })
  vim.notify("tandem: offline " .. (value and "on" or "off"), vim.log.levels.INFO)
end

--- Accept the ghost text in the current buffer; false when there is none.
function M.accept()
  if vim.lsp.inline_completion then
    return vim.lsp.inline_completion.get() ~= nil
  end
  return require("tandem.ghost").accept(vim.api.nvim_get_current_buf())
end

local function on_attach(c, buf)
  local ghost = M.config.ghost
  if not ghost.enabled then
    return
  end
  if vim.lsp.inline_completion then -- Neovim 0.12+
    vim.lsp.inline_completion.enable(true, { bufnr = buf })
  else
    require("tandem.ghost").attach(buf, c.id, ghost)
  end
  if ghost.accept then
    vim.keymap.set("i", ghost.accept, function()
      if not M.accept() then
        -- "i": ahead of keys already typed, "n": not through this mapping again
        vim.api.nvim_feedkeys(vim.keycode(ghost.accept), "in", false)
      end
    end, { buffer = buf, desc = "tandem: accept the suggestion" })
  end
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  local cfg = {
    settings = { tandem = M.config.settings },
    handlers = { ["$/tandem/status"] = on_status },
    on_attach = on_attach,
  }
  cfg.cmd = M.config.cmd
  cfg.filetypes = M.config.filetypes
  vim.lsp.config("tandem", cfg)
  vim.lsp.enable("tandem")

  vim.api.nvim_create_user_command("TandemStatus", M.show_status, {
    desc = "tandem-ls: model, backend and counters",
  })
  vim.api.nvim_create_user_command("TandemOffline", function(a)
    M.set_offline(a.args)
  end, {
    nargs = "?",
    complete = function()
      return { "on", "off", "toggle" }
    end,
    desc = "tandem-ls: never open a network connection (on|off|toggle)",
  })
end

return M
