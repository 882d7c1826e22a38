-- Next-edit suggestions: the change the server predicts you will make next,
-- drawn where it goes.
--
-- After an edit and a pause in normal mode, asks the server for
-- textDocument/copilotInlineEdit (the request Copilot's language server answers)
-- and draws the answer with extmarks: the text it replaces highlighted
-- (TandemNextEditDelete, linked to DiffDelete) and the line as it would become
-- as virtual lines below (TandemNextEditAdd, linked to DiffAdd). <Tab> jumps to
-- it, a second <Tab> applies it, <Esc> dismisses it. Any edit or leaving the
-- buffer dismisses it too. No prediction logic here: the edit is the server's.

local M = {}

M.ns = vim.api.nvim_create_namespace("tandem.nextedit")

vim.api.nvim_set_hl(0, "TandemNextEditDelete", { default = true, link = "DiffDelete" })
vim.api.nvim_set_hl(0, "TandemNextEditAdd", { default = true, link = "DiffAdd" })

---@class tandem.NextEdit
---@field edit table the LSP answer's edit {range, text, textDocument, command}
---@field tick integer the buffer's changedtick it belongs to
---@field client_id integer

---@type table<integer, {timer: uv.uv_timer_t?, request: {client_id: integer, id: integer}?, shown: tandem.NextEdit?}>
local buffers = {}

local function state(buf)
  buffers[buf] = buffers[buf] or {}
  return buffers[buf]
end

local function resolve(buf)
  return (buf == nil or buf == 0) and vim.api.nvim_get_current_buf() or buf
end

--- Remove the suggestion drawn in `buf`.
function M.clear(buf)
  buf = resolve(buf)
  local s = buffers[buf]
  if s then
    s.shown = nil
  end
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

--- Cancel the request in flight for `buf`.
function M.cancel(buf)
  local s = buffers[resolve(buf)]
  if s and s.request then
    local client = vim.lsp.get_client_by_id(s.request.client_id)
    if client then
      client:cancel_request(s.request.id)
    end
    s.request = nil
  end
end

--- Byte positions {row, col} (0-based) of an LSP range in `buf`.
local function byte_range(buf, range, encoding)
  local function at(pos)
    local line = vim.api.nvim_buf_get_lines(buf, pos.line, pos.line + 1, false)[1] or ""
    return { pos.line, vim.str_byteindex(line, encoding, pos.character, false) }
  end
  return at(range.start), at(range["end"])
end

--- The lines the edited span becomes (the edit applied to its lines).
local function new_lines(buf, start, stop, text)
  local first = vim.api.nvim_buf_get_lines(buf, start[1], start[1] + 1, false)[1] or ""
  local last = vim.api.nvim_buf_get_lines(buf, stop[1], stop[1] + 1, false)[1] or ""
  local joined = first:sub(1, start[2]) .. text .. last:sub(stop[2] + 1)
  return vim.split(joined, "\n", { plain = true })
end

local function draw(buf, shown, encoding)
  local start, stop = byte_range(buf, shown.edit.range, encoding)
  local virt = {}
  for _, line in ipairs(new_lines(buf, start, stop, shown.edit.text)) do
    table.insert(virt, { { line, "TandemNextEditAdd" } })
  end
  if start[1] ~= stop[1] or start[2] ~= stop[2] then
    vim.api.nvim_buf_set_extmark(buf, M.ns, start[1], start[2], {
      end_row = stop[1],
      end_col = stop[2],
      hl_group = "TandemNextEditDelete",
    })
  end
  vim.api.nvim_buf_set_extmark(buf, M.ns, stop[1], 0, { virt_lines = virt })
end

local function request(buf, client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  local win = vim.api.nvim_get_current_win()
  if not client or vim.api.nvim_win_get_buf(win) ~= buf or vim.fn.mode() ~= "n" then
    return
  end
  local s = state(buf)
  M.cancel(buf)
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  ---@diagnostic disable-next-line: inject-field
  params.textDocument.version = vim.lsp.util.buf_versions[buf]
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local ok, id
  ok, id = client:request("textDocument/copilotInlineEdit", params, function(err, result)
    if s.request and s.request.id == id then
      s.request = nil
    end
    local edit = not err and result and result.edits and result.edits[1]
    if not edit or not vim.api.nvim_buf_is_valid(buf) then
      return
    end
    if vim.api.nvim_buf_get_changedtick(buf) ~= tick then
      return -- typed on meanwhile: the edit's range is stale
    end
    M.clear(buf)
    s.shown = { edit = edit, tick = tick, client_id = client_id }
    draw(buf, s.shown, client.offset_encoding)
  end, buf)
  if ok then
    s.request = { client_id = client_id, id = id }
  end
end

--- Ask after `debounce_ms` without another change.
function M.schedule(buf, client_id, debounce_ms)
  buf = resolve(buf)
  local s = state(buf)
  M.clear(buf)
  M.cancel(buf)
  s.timer = s.timer or assert(vim.uv.new_timer())
  s.timer:stop()
  s.timer:start(debounce_ms, 0, vim.schedule_wrap(function()
    request(buf, client_id)
  end))
end

--- The suggestion shown in `buf`: {range, text, textDocument, command}, or nil.
function M.current(buf)
  local s = buffers[resolve(buf)]
  return s and s.shown and s.shown.edit or nil
end

--- <Tab>: jump to the suggestion, or apply it when the cursor is there.
--- Returns false when there is none (the key then does what it always does).
function M.tab(buf)
  buf = resolve(buf)
  local s = buffers[buf]
  local shown = s and s.shown
  if not shown or vim.api.nvim_buf_get_changedtick(buf) ~= shown.tick then
    return false
  end
  local client = vim.lsp.get_client_by_id(shown.client_id)
  if not client then
    return false
  end
  local encoding = client.offset_encoding
  local start = byte_range(buf, shown.edit.range, encoding)
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  if row - 1 ~= start[1] or col ~= start[2] then
    vim.api.nvim_win_set_cursor(0, { start[1] + 1, start[2] })
    return true
  end
  M.clear(buf)
  vim.lsp.util.apply_text_edits(
    { { range = shown.edit.range, newText = shown.edit.text } }, buf, encoding
  )
  local command = shown.edit.command
  if command then
    client:request("workspace/executeCommand", {
      command = command.command, arguments = command.arguments,
    }, function() end, buf)
  end
  return true
end

--- <Esc>: dismiss the suggestion. Returns false when there is none.
function M.dismiss(buf)
  buf = resolve(buf)
  if not M.current(buf) then
    return false
  end
  M.clear(buf)
  return true
end

--- Suggest next edits in `buf` for the client `client_id`.
---@param opts {debounce_ms: integer, accept: string|false, dismiss: string|false}
function M.attach(buf, client_id, opts)
  local group = vim.api.nvim_create_augroup("tandem.nextedit." .. buf, { clear = true })
  local function changed()
    if vim.fn.mode() == "n" then
      M.schedule(buf, client_id, opts.debounce_ms)
    else
      M.clear(buf)
      M.cancel(buf)
    end
  end
  vim.api.nvim_create_autocmd({ "TextChanged", "InsertLeave" }, {
    group = group,
    buffer = buf,
    callback = function(ev)
      if ev.event == "InsertLeave" then
        -- Only after an edit: leaving insert mode without one asks nothing.
        local s = state(buf)
        if s.left_tick == vim.api.nvim_buf_get_changedtick(buf) then
          return
        end
      end
      changed()
    end,
  })
  vim.api.nvim_create_autocmd("InsertEnter", {
    group = group,
    buffer = buf,
    callback = function()
      state(buf).left_tick = vim.api.nvim_buf_get_changedtick(buf)
      M.clear(buf)
      M.cancel(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ "BufLeave", "BufWipeout", "LspDetach" }, {
    group = group,
    buffer = buf,
    callback = function(ev)
      local s = buffers[buf]
      if s and s.timer then
        s.timer:stop()
      end
      M.cancel(buf)
      M.clear(buf)
      if ev.event ~= "BufLeave" then
        if s and s.timer then
          s.timer:close()
        end
        buffers[buf] = nil
        pcall(vim.api.nvim_del_augroup_by_id, group)
      end
    end,
  })
  local function map(key, fn, desc)
    if not key then
      return
    end
    vim.keymap.set("n", key, function()
      if not fn(buf) then
        vim.api.nvim_feedkeys(vim.keycode(key), "n", false)
      end
    end, { buffer = buf, desc = desc })
  end
  map(opts.accept, M.tab, "tandem: jump to the next edit, or apply it")
  map(opts.dismiss, M.dismiss, "tandem: dismiss the next edit")
end

return M
