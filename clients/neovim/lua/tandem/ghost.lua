-- Ghost text for Neovim 0.11, which has no vim.lsp.inline_completion yet.
--
-- After a short idle in insert mode, asks the server for
-- textDocument/inlineCompletion and shows the answer as virtual text at the
-- cursor. Typing on cancels the request in flight and asks again; moving away or
-- leaving insert mode dismisses it; accept() inserts it. No completion logic
-- lives here: the text is the server's.

local M = {}

M.ns = vim.api.nvim_create_namespace("tandem.ghost")

---@class tandem.GhostState
---@field timer uv.uv_timer_t?
---@field request {client_id: integer, id: integer}?
---@field item {text: string, row: integer, col: integer, tick: integer}?

---@type table<integer, tandem.GhostState>
local buffers = {}

local function resolve(buf)
  return (buf == nil or buf == 0) and vim.api.nvim_get_current_buf() or buf
end

local function state(buf)
  buffers[buf] = buffers[buf] or {}
  return buffers[buf]
end

--- Remove the ghost text shown in `buf`.
function M.clear(buf)
  buf = resolve(buf)
  local s = buffers[buf]
  if s then
    s.item = nil
  end
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

--- Cancel the request in flight for `buf` ($/cancelRequest).
function M.cancel(buf)
  buf = resolve(buf)
  local s = buffers[buf]
  if s and s.request then
    local client = vim.lsp.get_client_by_id(s.request.client_id)
    if client then
      client:cancel_request(s.request.id)
    end
    s.request = nil
  end
end

local function show(buf, text, row, col)
  local lines = vim.split(text, "\n", { plain = true })
  local opts = {
    virt_text = { { lines[1], "Comment" } },
    virt_text_pos = "inline",
    hl_mode = "combine",
  }
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], "Comment" } })
    end
  end
  vim.api.nvim_buf_set_extmark(buf, M.ns, row, col, opts)
end

--- The part of an item's text still to insert at the cursor: an item whose range
--- starts before the cursor repeats what was typed since.
local function text_after_cursor(item, buf, row, col, encoding)
  local text = item.insertText
  if type(text) == "table" then
    text = text.value
  end
  local range = item.range
  if type(text) ~= "string" or not range or range.start.line ~= row then
    return text
  end
  local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, true)[1]
  local start = vim.str_byteindex(line, encoding, range.start.character, false)
  local typed = line:sub(start + 1, col)
  if typed ~= "" and vim.startswith(text, typed) then
    return text:sub(#typed + 1)
  end
  return text
end

local function request(buf, client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  local win = vim.api.nvim_get_current_win()
  if not client or vim.api.nvim_win_get_buf(win) ~= buf or vim.fn.mode() ~= "i" then
    return
  end
  local s = state(buf)
  M.cancel(buf)
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding)
  ---@diagnostic disable-next-line: inject-field
  params.context = { triggerKind = 2 } -- Automatic
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local row, col = unpack(vim.api.nvim_win_get_cursor(win))
  local ok, id
  ok, id = client:request("textDocument/inlineCompletion", params, function(err, result)
    if s.request and s.request.id == id then
      s.request = nil
    end
    if err or not result then
      return
    end
    local items = result.items or result
    local item = items[1]
    if not item or not vim.api.nvim_buf_is_valid(buf) then
      return
    end
    -- Only show what still fits: the same text, cursor and insert mode.
    local now = vim.api.nvim_win_get_cursor(0)
    if vim.api.nvim_buf_get_changedtick(buf) ~= tick or vim.fn.mode() ~= "i"
      or vim.api.nvim_get_current_buf() ~= buf or now[1] ~= row or now[2] ~= col then
      return
    end
    local text = text_after_cursor(item, buf, row - 1, col, client.offset_encoding)
    if not text or text == "" then
      return
    end
    M.clear(buf)
    s.item = { text = text, row = row - 1, col = col, tick = tick }
    show(buf, text, row - 1, col)
  end, buf)
  if ok then
    s.request = { client_id = client_id, id = id }
  end
end

--- Ask again after `debounce_ms` of quiet (a newer keystroke restarts the wait).
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

--- Stop waiting, cancel the request in flight and remove the ghost text.
function M.stop(buf)
  local s = buffers[resolve(buf)]
  if s and s.timer then
    s.timer:stop()
  end
  M.cancel(buf)
  M.clear(buf)
end

--- The ghost text shown in `buf`, or nil.
function M.current(buf)
  local s = buffers[resolve(buf)]
  return s and s.item and s.item.text or nil
end

--- Insert the ghost text at the cursor. Returns false when there is none.
function M.accept(buf)
  buf = resolve(buf)
  local s = buffers[buf]
  local item = s and s.item
  if not item or vim.api.nvim_buf_get_changedtick(buf) ~= item.tick then
    return false
  end
  local lines = vim.split(item.text, "\n", { plain = true })
  M.clear(buf)
  vim.api.nvim_buf_set_text(buf, item.row, item.col, item.row, item.col, lines)
  local last = lines[#lines]
  if #lines == 1 then
    vim.api.nvim_win_set_cursor(0, { item.row + 1, item.col + #last })
  else
    vim.api.nvim_win_set_cursor(0, { item.row + #lines, #last })
  end
  return true
end

--- Show ghost text in `buf` for the client `client_id`.
function M.attach(buf, client_id, opts)
  local group = vim.api.nvim_create_augroup("tandem.ghost." .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ "InsertEnter", "TextChangedI", "TextChangedP" }, {
    group = group,
    buffer = buf,
    callback = function()
      M.schedule(buf, client_id, opts.debounce_ms)
    end,
  })
  vim.api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = buf,
    callback = function()
      local s = buffers[buf]
      local row, col = unpack(vim.api.nvim_win_get_cursor(0))
      if s and s.item and (s.item.row ~= row - 1 or s.item.col ~= col) then
        M.clear(buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = buf,
    callback = function()
      M.stop(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ "BufWipeout", "LspDetach" }, {
    group = group,
    buffer = buf,
    callback = function()
      M.stop(buf)
      local s = buffers[buf]
      if s and s.timer then
        s.timer:close()
      end
      buffers[buf] = nil
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })
end

return M
