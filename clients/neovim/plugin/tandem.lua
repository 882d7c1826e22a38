-- Nothing runs at startup: call require("tandem").setup() (lazy.nvim: opts = {}),
-- or vim.lsp.enable("tandem") for the server alone (lsp/tandem.lua).
if vim.g.loaded_tandem then
  return
end
vim.g.loaded_tandem = true
