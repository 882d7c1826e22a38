-- tandem-ls for Neovim 0.11+: starts the server, ghost text, commands, statusline.
--
--   require("tandem").setup({
--     cmd = { "tandem-ls" },          -- or { "/path/to/venv/bin/python", "-m", "tandem" }
--     settings = { ["local"] = { modelPath = "~/models/qwen2.5-coder-1.5b.gguf" } },
--     ghost = { enabled = true, debounce_ms = 30, accept = "<Tab>" },
--     next_edit = { enabled = true, debounce_ms = 300, accept = "<Tab>", dismiss = "<Esc>" },
--   })
--
-- Next edits: after an edit and a pause in normal mode the server's predicted next
-- change is drawn where it goes (lua/tandem/nextedit.lua); <Tab> jumps to it, a
-- second <Tab> applies it, <Esc> dismisses it. next_edit.enabled = false (or the
-- server setting nextEdit.enabled = false) turns it off.
--
-- Commands: :TandemStatus, :TandemOffline on|off|toggle, :[range]TandemExplain[!],
-- :[range]TandemRefactor[!] {instruction} (with !: ask the cloud backend, when the
-- settings allow escalation). Docstrings, type hints, simplify, extract and
-- fixes are code actions (vim.lsp.buf.code_action()). Statusline:
-- require("tandem").statusline(). Health: :checkhealth tandem.

local M = {}

M.defaults = {
  cmd = nil, ---@type string[]? the server command; nil: lsp/tandem.lua's "tandem-ls"
  filetypes = nil, ---@type string[]? nil: lsp/tandem.lua's list
  settings = {}, ---@type table the "tandem" settings section
  ghost = {
    enabled = true,
    debounce_ms = 30, -- coalesces keys typed at once; the server adapts its own wait
    accept = "<Tab>", -- insert-mode key that accepts the ghost text (false: none)
  },
  next_edit = {
    enabled = true,
    debounce_ms = 300, -- pause in normal mode after an edit before asking
    accept = "<Tab>", -- normal-mode key: jump to the suggestion, again: apply it
    dismiss = "<Esc>", -- normal-mode key that dismisses it (false: none)
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
  if s.routing and s.routing.escalation then
    where = where .. "+" .. s.routing.escalateTo
  end
  if s.offline == true then
    where = where .. ", offline"
  elseif s.offline == "auto" then
    where = where .. ", no network"
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

--- The LSP range of an Ex command's line range, or the cursor when it has none.
local function command_range(a)
  if a.range == 0 then
    local pos = vim.api.nvim_win_get_cursor(0)
    local line = vim.api.nvim_get_current_line():sub(1, pos[2])
    local c = client(0)
    local col = vim.str_utfindex(line, c and c.offset_encoding or "utf-16")
    local here = { line = pos[1] - 1, character = col }
    return { start = here, ["end"] = here }
  end
  return { start = { line = a.line1 - 1, character = 0 }, ["end"] = { line = a.line2, character = 0 } }
end

local explain = { buf = nil, win = nil, token = nil }

--- Show `text` (Markdown) in the explanation float, opening it if needed.
local function show_explanation(text)
  local lines = vim.split(text, "\n", { plain = true })
  if not (explain.buf and vim.api.nvim_buf_is_valid(explain.buf)) then
    explain.buf = vim.api.nvim_create_buf(false, true)
    vim.bo[explain.buf].filetype = "markdown"
    vim.keymap.set("n", "q", "<cmd>close<cr>", { buffer = explain.buf })
  end
  vim.api.nvim_buf_set_lines(explain.buf, 0, -1, false, lines)
  local width = math.min(80, math.floor(vim.o.columns * 0.8))
  local height = math.max(1, math.min(#lines, math.floor(vim.o.lines * 0.5)))
  if explain.win and vim.api.nvim_win_is_valid(explain.win) then
    vim.api.nvim_win_set_config(explain.win, { width = width, height = height })
  else
    explain.win = vim.api.nvim_open_win(explain.buf, false, {
      relative = "cursor", row = 1, col = 0, width = width, height = height,
      style = "minimal", border = "rounded", title = " tandem: explanation ",
    })
    vim.wo[explain.win].wrap = true
    vim.wo[explain.win].conceallevel = 2
  end
end

--- Streamed text of the explanation under way ($/progress from the server).
local function on_progress(ev)
  local params = ev.data and ev.data.params
  local value = params and params.value
  if type(value) ~= "table" then
    return
  end
  if value.kind == "begin" and value.title == "tandem: explaining" then
    explain.token = params.token
  elseif params.token == explain.token and value.kind == "report" and value.message then
    show_explanation(value.message)
  end
end

--- :TandemExplain: explain the lines (or the definition at the cursor).
function M.explain(a)
  local buf = vim.api.nvim_get_current_buf()
  local arg = { uri = vim.uri_from_bufnr(buf), range = command_range(a), cloud = a.bang or nil }
  M.execute("tandem.explain", { arg }, function(result)
    explain.token = nil
    if result and result.error then
      vim.notify("tandem: " .. result.error, vim.log.levels.WARN)
    elseif result and result.markdown ~= "" then
      M.last_explanation = result.markdown
      show_explanation(result.markdown)
    end
  end)
end

--- :TandemRefactor {instruction}: rewrite the lines as told; the edit is checked
--- by the server and applied through the editor (undo with `u`).
function M.refactor(a)
  local buf = vim.api.nvim_get_current_buf()
  local rng = command_range(a)
  local function run(instruction)
    if not instruction or instruction == "" then
      return
    end
    local arg = {
      uri = vim.uri_from_bufnr(buf), range = rng, task = "rewrite", instruction = instruction, cloud = a.bang or nil,
    }
    M.execute("tandem.refactor", { arg }, function(result)
      if result and not result.applied and result.message then
        vim.notify("tandem: " .. result.message, vim.log.levels.WARN)
      end
    end)
  end
  if a.args ~= "" then
    run(a.args)
  else
    vim.ui.input({ prompt = "tandem: rewrite how? " }, run)
  end
end

--- Tell the server this buffer is shown and where its cursor rests, so it can
--- warm that prompt before the user types (`tandem/didFocus`).
local function focus(c, buf)
  if not vim.api.nvim_buf_is_valid(buf) or vim.api.nvim_get_current_buf() ~= buf then
    return
  end
  local params = vim.lsp.util.make_position_params(0, c.offset_encoding)
  c:notify("tandem/didFocus", {
    textDocument = { uri = vim.uri_from_bufnr(buf) },
    position = params.position,
  })
end

local function on_attach(c, buf)
  vim.api.nvim_create_autocmd({ "BufEnter", "CursorHold" }, {
    buffer = buf,
    group = vim.api.nvim_create_augroup("tandem.focus." .. buf, { clear = true }),
    callback = function()
      focus(c, buf)
    end,
  })
  focus(c, buf)
  local next_edit = M.config.next_edit
  if next_edit.enabled then
    require("tandem.nextedit").attach(buf, c.id, next_edit)
  end
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
  vim.api.nvim_create_user_command("TandemExplain", M.explain, {
    range = true,
    bang = true,
    desc = "tandem-ls: explain the lines, or the definition at the cursor (! asks the cloud)",
  })
  vim.api.nvim_create_user_command("TandemRefactor", M.refactor, {
    range = true,
    bang = true,
    nargs = "*",
    desc = "tandem-ls: rewrite the lines as instructed",
  })
  vim.api.nvim_create_autocmd("LspProgress", {
    group = vim.api.nvim_create_augroup("tandem.explain", { clear = true }),
    callback = on_progress,
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
