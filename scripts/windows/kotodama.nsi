; Kotodama's Windows installer (NSIS 3, built by scripts/windows-desktop.sh; makensis runs on
; Linux too). Per-user: no administrator rights, installs into %LOCALAPPDATA%\Programs\Kotodama,
; a Start menu shortcut, an uninstaller listed in "Apps & features".
;
; The app draws its window with the Microsoft Edge WebView2 runtime (Evergreen), which Windows 11
; and up-to-date Windows 10 already have. The installer only checks for it and says where to get
; it: nothing is downloaded.
;
; WebView2Loader.dll (Microsoft's redistributable loader, from the webview2-com-sys crate) ships
; beside the exe: a windows-gnu build links it as a DLL (only MSVC builds link it statically).
;
; makensis -DVERSION=0.1.0 -DEXE=<kotodama-desktop.exe> -DLOADER=<WebView2Loader.dll>
;          -DICON=<icon.ico> -DOUTFILE=<setup.exe>    (absolute paths)

; A 64-bit installer for the 64-bit app (on 32-bit Windows neither starts).
Target amd64-unicode
ManifestDPIAware true
SetCompressor /SOLID lzma

!ifndef VERSION
  !error "pass -DVERSION=x.y.z"
!endif
!ifndef EXE
  !error "pass -DEXE=path\to\kotodama-desktop.exe"
!endif
!ifndef LOADER
  !error "pass -DLOADER=path\to\WebView2Loader.dll"
!endif
!ifndef OUTFILE
  !define OUTFILE "Kotodama-setup-${VERSION}.exe"
!endif

!define NAME "Kotodama"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Kotodama"
; The WebView2 Evergreen runtime's client id (Microsoft's "Distribute your app" page).
!define WEBVIEW2_ID "{F3017226-FE2A-4295-8BDF-00C3A9A7E4C5}"
!define WEBVIEW2_URL "https://developer.microsoft.com/microsoft-edge/webview2/"

!include "MUI2.nsh"
!include "LogicLib.nsh"

Name "${NAME}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\Kotodama"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
BrandingText "${NAME} ${VERSION}"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${NAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${NAME} installer"
VIAddVersionKey "LegalCopyright" "Kotodama developers"

!ifdef ICON
  !define MUI_ICON "${ICON}"
  !define MUI_UNICON "${ICON}"
!endif
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\kotodama-desktop.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${NAME}"

!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

; $0 = the installed WebView2 runtime's version, or "" when there is none. Microsoft's rule: the
; "pv" value under either key, present and neither empty nor 0.0.0.0.
!macro ReadWebView2Version
  SetRegView 64
  ReadRegStr $0 HKLM "SOFTWARE\WOW6432Node\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_ID}" "pv"
  ${If} $0 == ""
  ${OrIf} $0 == "0.0.0.0"
    ReadRegStr $0 HKCU "Software\Microsoft\EdgeUpdate\Clients\${WEBVIEW2_ID}" "pv"
  ${EndIf}
  ${If} $0 == "0.0.0.0"
    StrCpy $0 ""
  ${EndIf}
  SetRegView lastused
!macroend

Function .onInit
  !insertmacro ReadWebView2Version
  ${If} $0 == ""
    MessageBox MB_YESNO|MB_ICONEXCLAMATION "${NAME} needs the Microsoft Edge WebView2 Runtime \
      (Evergreen), which is not installed on this computer.$\r$\n$\r$\nInstall the Evergreen \
      WebView2 Runtime from$\r$\n${WEBVIEW2_URL}$\r$\nthen start ${NAME}.$\r$\n$\r$\nInstall \
      ${NAME} now anyway?" /SD IDYES IDYES +2
    Abort
  ${EndIf}
FunctionEnd

Section "Kotodama" SecMain
  SectionIn RO
  SetOutPath "$INSTDIR"
  File "/oname=kotodama-desktop.exe" "${EXE}"
  File "/oname=WebView2Loader.dll" "${LOADER}"
  !ifdef ICON
    File "/oname=kotodama.ico" "${ICON}"
  !endif
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateShortcut "$SMPROGRAMS\${NAME}.lnk" "$INSTDIR\kotodama-desktop.exe"

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "Kotodama developers"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\kotodama-desktop.exe"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

; Removes the program only: settings, sessions and logs (the app's data directory) stay.
Section "Uninstall"
  Delete "$SMPROGRAMS\${NAME}.lnk"
  Delete "$INSTDIR\kotodama-desktop.exe"
  Delete "$INSTDIR\WebView2Loader.dll"
  Delete "$INSTDIR\kotodama.ico"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
